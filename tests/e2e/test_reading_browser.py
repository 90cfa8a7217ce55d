"""Reading aids in a real browser: panes that scroll apart or together, the word diff on `d`,
highlighted code, folded conversations; all under the page's strict CSP.

Run with SCREENSHOTS=1 to refresh docs/annotate-diff.png.
"""

import os
from collections.abc import Callable
from typing import Any

import pytest

from apps.batches.models import Batch, Comparison
from apps.judging.models import Assignment
from apps.projects.models import Project
from tests.conftest import prompt_line
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import DOCS, current_assignment, log_in, press_and_wait_for_swap
from tests.e2e.test_annotate_browser import FENCED, SCRIPT, assert_nothing_ran

pytestmark = pytest.mark.django_db(transaction=True)

PANES = """() => [...document.querySelectorAll(".candidates > .candidate")].map(pane => {
    const box = pane.getBoundingClientRect();
    return {top: pane.scrollTop, range: pane.scrollHeight - pane.clientHeight,
            x: box.x, y: box.y, overflow: getComputedStyle(pane).overflowY};
})"""


def long_text(label: str, paragraphs: int) -> str:
    return "\n\n".join(f"{label} paragraph {i}: " + "some words " * 30 for i in range(paragraphs))


def panes(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(PANES)


def ratio(pane: dict[str, Any]) -> float:
    return pane["top"] / pane["range"]


def wheel_over(page: Any, selector: str, dy: int) -> None:
    box = page.locator(selector).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, dy)


def wait_until_still(page: Any) -> list[dict[str, Any]]:
    """The panes' state once wheel scrolling and any following have settled: no pane moved
    for ten frames in a row (a wheel's scroll starts within a frame or two of the event)."""
    page.wait_for_function(
        """() => new Promise(resolve => {
            const tops = () => [...document.querySelectorAll(".candidate")].map(p => p.scrollTop);
            let before = tops().join(), still = 0;
            const step = () => {
                const now = tops().join();
                still = now === before ? still + 1 : 0;
                before = now;
                if (still >= 10) resolve(true); else requestAnimationFrame(step);
            };
            requestAnimationFrame(step);
        })"""
    )
    return panes(page)


def test_the_panes_scroll_apart_or_together(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    for i in range(2):
        import_rows(
            {
                "id": f"long-{i}",
                "prompt": "Write at length.",
                "candidates": [
                    {"id": "a", "text": long_text("Alpha", 40)},
                    {"id": "b", "text": long_text("Beta", 15)},
                ],
            }
        )
    base = live_server.url
    log_in(page, base, "ann")
    page.goto(f"{base}/p/demo/")

    left, right = panes(page)
    assert left["overflow"] == right["overflow"] == "auto"
    assert left["range"] > 0 and right["range"] > 0, "the responses do not scroll in panes"
    assert left["y"] == right["y"] and left["x"] < right["x"], "the panes are not side by side"

    # Apart: the wheel scrolls the pane under the pointer, and only it.
    page_y = page.evaluate("window.scrollY")
    wheel_over(page, ".candidate:first-of-type", 600)
    left, right = wait_until_still(page)
    assert left["top"] > 0 and right["top"] == 0
    wheel_over(page, ".candidate:last-of-type", 200)
    left_before = left["top"]
    left, right = wait_until_still(page)
    assert right["top"] > 0 and left["top"] == left_before
    assert page.evaluate("window.scrollY") == page_y

    # Together: turning it on brings Right level with Left; then either one leads.
    together = page.get_by_label("Scroll together")
    assert together.is_visible() and not together.is_checked()
    together.click()
    left, right = wait_until_still(page)
    assert abs(ratio(left) - ratio(right)) < 0.02, (left, right)
    wheel_over(page, ".candidate:last-of-type", 300)
    left, right = wait_until_still(page)
    assert right["top"] > 0 and abs(ratio(left) - ratio(right)) < 0.02, (left, right)
    wheel_over(page, ".candidate:first-of-type", -400)
    left, right = wait_until_still(page)
    assert abs(ratio(left) - ratio(right)) < 0.02, (left, right)

    # Remembered: after a reload, and in the card htmx swaps in after a judgment. The click
    # left the keys to the page, so `1` judges at once.
    assert page.evaluate("localStorage.getItem('annotate.scrollTogether')") == "1"
    page.reload()
    assert page.get_by_label("Scroll together").is_checked()
    assert press_and_wait_for_swap(page, "1") is not None
    assert page.get_by_label("Scroll together").is_checked()
    wheel_over(page, ".candidate:first-of-type", 500)
    left, right = wait_until_still(page)
    assert left["top"] > 0 and abs(ratio(left) - ratio(right)) < 0.02, (left, right)

    # Off again: apart again.
    page.get_by_label("Scroll together").click()
    assert page.evaluate("localStorage.getItem('annotate.scrollTogether')") == "0"
    wheel_over(page, ".candidate:last-of-type", 400)
    right_before = right["top"]
    left_before = left["top"]
    left, right = wait_until_still(page)
    assert right["top"] != right_before and left["top"] == left_before
    page_log.assert_clean(base)


def test_d_shows_the_words_each_response_has_alone(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(
        {
            "id": "p-1",
            "prompt": "Name a colour.",
            "candidates": [
                {"id": "a", "text": "The sky is **blue** today, mostly."},
                {"id": "b", "text": "The sky is **grey** today, sadly <b>so</b>."},
            ],
        },
        prompt_line("p-2"),
    )
    Comparison.objects.filter(prompt__external_id="p-1").update(rank=0)  # first in the queue
    base = live_server.url
    log_in(page, base, "ann")
    page.goto(f"{base}/p/demo/")
    assignment = Assignment.objects.get(pk=int(current_assignment(page) or 0))
    assert assignment.comparison.prompt.external_id == "p-1"
    marks = {"a": ["blue", "mostly"], "b": ["grey", "sadly <b>so</b>"]}
    left_marks, right_marks = (
        marks[assignment.left.external_id],
        marks[assignment.right.external_id],
    )

    rendered = page.locator(".candidate .md")
    diffs = page.locator(".candidate .diff-view")
    assert rendered.nth(0).is_visible() and not diffs.nth(0).is_visible()
    page.keyboard.press("d")
    assert diffs.nth(0).is_visible() and diffs.nth(1).is_visible()
    assert not rendered.nth(0).is_visible() and not rendered.nth(1).is_visible()
    assert page.get_by_label("Show differences").is_checked()
    assert page.locator(".candidate mark.only-left").all_inner_texts() == left_marks
    assert page.locator(".candidate mark.only-right").all_inner_texts() == right_marks
    assert page.locator(".candidate:first-of-type mark.only-right").count() == 0
    assert "**" in diffs.nth(0).inner_text()  # the plain text, as written
    assert page.locator(".diff-view b").count() == 0  # ... and escaped

    page.keyboard.press("d")
    assert rendered.nth(0).is_visible() and not diffs.nth(0).is_visible()

    # In a text field, `d` is a letter.
    page.locator("#rationale").click()
    page.keyboard.type("odd")
    assert page.input_value("#rationale") == "odd"
    assert not page.get_by_label("Show differences").is_checked()
    page.keyboard.press("Escape")  # annotate.js: back to the keys

    # The checkbox does the same; after a click the judging keys work at once.
    page.get_by_label("Show differences").click()
    assert diffs.nth(1).is_visible()
    assert press_and_wait_for_swap(page, "2") is not None
    # The new card starts on the rendered view, and `d` works there too.
    assert page.locator(".candidate .md").nth(0).is_visible()
    page.keyboard.press("d")
    assert page.locator(".candidate .diff-view").nth(0).is_visible()
    assert page.locator(".candidate mark.only-left").all_inner_texts() in (["1"], ["2"])
    page_log.assert_clean(base)


def test_code_is_highlighted_in_colour_without_inline_styles(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    code = '```python\ndef greet(name):\n    return f"Hi {name}"  # friendly\n```'
    import_rows(
        {
            "id": "p-1",
            "prompt": "Write a greeting function.",
            "candidates": [{"id": "a", "text": code}, {"id": "b", "text": f"Here:\n\n{code}"}],
        }
    )
    base = live_server.url
    log_in(page, base, "ann")
    page.goto(f"{base}/p/demo/")
    colours = page.evaluate(
        """() => {
            const code = document.querySelector(".candidate .md pre code.language-python");
            const colour = selector => getComputedStyle(code.querySelector(selector)).color;
            return {text: getComputedStyle(code).color, keyword: colour("span.k"),
                    function: colour("span.nf"), comment: colour("span.c1"),
                    background: getComputedStyle(code.parentElement).backgroundColor,
                    styled: document.querySelectorAll("#comparison [style]").length};
        }"""
    )
    assert colours["keyword"] == "rgb(255, 123, 114)"  # github-dark's keyword colour
    assert len({colours["text"], colours["keyword"], colours["function"], colours["comment"]}) == 4
    assert colours["background"] == "rgb(13, 17, 23)"
    assert colours["styled"] == 0
    assert page.inner_text(".candidate:first-of-type pre").strip().startswith("def greet(name):")
    page_log.assert_clean(base)  # a blocked style or script would be a console error


def test_hostile_code_and_diffs_stay_text(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    hostile_info = '```"><script>window.__xss=1;alert(1)</script>\ncode\n```'
    onclick_info = "```html onclick=window.__xss=1\n<b onclick=window.__xss=1>x</b>\n```"
    import_rows(
        {
            "id": "p-1",
            "prompt": [
                {"role": "system", "content": "Be safe."},
                *(
                    {"role": role, "content": f"Turn {i} {SCRIPT}"}
                    for i, role in enumerate(["user", "assistant"] * 4)
                ),
            ],
            "candidates": [
                {"id": "a", "text": f"{FENCED}\n\n{hostile_info}"},
                {"id": "b", "text": f"{onclick_info}\n\n{SCRIPT} differs"},
            ],
        }
    )
    base = live_server.url
    log_in(page, base, "ann")
    page.goto(f"{base}/p/demo/")
    prompt = page.locator(".prompt")
    assert prompt.get_by_text("Show 4 earlier messages").is_visible()
    assert prompt.get_by_text("Turn 7").is_visible()  # the last turns are in view
    assert not prompt.get_by_text("Turn 0").is_visible()
    for summary in page.locator("#comparison details > summary").all():
        summary.click()
    assert prompt.get_by_text("Turn 0").is_visible()
    assert page.locator(".candidate pre code.language-html span.nt").count() > 0
    assert_nothing_ran(page, page_log, base)
    visible = page.inner_text("#comparison")
    assert "<script>window.__xss=1;alert(1)</script>" in visible
    assert "<b onclick=window.__xss=1>x</b>" in visible

    page.keyboard.press("d")
    assert page.locator(".candidate .diff-view").nth(0).is_visible()
    probe = assert_nothing_ran(page, page_log, base)
    assert '```"><script>window.__xss=1;alert(1)</script>' in page.inner_text(".candidates")
    assert probe["scripts"] == 0


def test_it_takes_the_diff_screenshot_for_the_docs(
    tmp_path: Any,
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    project.name = "Python answers, round 1"
    project.save(update_fields=["name"])
    import_rows(
        {
            "id": "py-2",
            "prompt": [
                {"role": "system", "content": "You are a concise Python tutor."},
                {"role": "user", "content": "How do I read a file line by line?"},
                {"role": "assistant", "content": "Open it and loop over it."},
                {"role": "user", "content": "Show me, and strip the newlines."},
            ],
            "candidates": [
                {
                    "id": "a",
                    "text": "Loop over the file object:\n\n```python\n"
                    'with open("notes.txt") as f:\n    for line in f:\n'
                    "        print(line.rstrip())\n```\n\nThe file is closed for you at the end.",
                },
                {
                    "id": "b",
                    "text": "Loop over the open file:\n\n```python\n"
                    'with open("notes.txt", encoding="utf-8") as f:\n    for line in f:\n'
                    '        print(line.rstrip("\\n"))\n```\n\n'
                    "The file is closed when the block ends.",
                },
            ],
        }
    )
    target = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path
    base = live_server.url
    log_in(page, base, "ann")
    page.goto(f"{base}/p/demo/")
    assignment = Assignment.objects.get(pk=int(current_assignment(page) or 0))
    if assignment.left.external_id != "a":
        Assignment.objects.filter(pk=assignment.pk).update(
            left=assignment.right, right=assignment.left
        )
        page.reload()
    page.keyboard.press("d")
    page.locator(".diff-view mark").first.wait_for()
    page.screenshot(path=str(target / "annotate-diff.png"))
    assert (target / "annotate-diff.png").stat().st_size > 10_000
    page_log.assert_clean(base)
