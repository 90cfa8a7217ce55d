from django import template
from django.utils.safestring import SafeString, mark_safe

from apps.judging.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    # render_markdown's output has passed nh3's allow-list; it is safe to insert as HTML.
    return mark_safe(render_markdown(text or ""))
