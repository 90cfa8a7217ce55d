"""Rendering once: every text the judging page shows is rendered once and stored, by content.

A judging page, or the HTMX judge that brings the next card, reads the stored HTML of its texts
in one query (by digest): rendering costs once per text, not every page load. An import stores
its rows first and then sends `render_batch_task`, which renders the batch's texts in the
background, a chunk of prompts at a time (`renderings_for_batch`); the import itself never waits
for the Markdown parser. A text with no stored rendering yet (a batch whose rendering has not
reached it, or was never sent because the broker was down; a project's guidelines; a renderer
version that changed) is rendered the first time it is shown, within the renderer's bounds, and
stored then. It all lives in the database, so it needs no cache (Redis) to work.

The stored renderings are a cache of the texts, never the texts: `renderings_prune` (the beat job
`prune-renderings`, and `manage.py prune_renderings`) deletes the rows older than
RENDERINGS_MAX_AGE_DAYS, so that the texts of deleted batches and of past renderer versions do
not stay for ever; a text still shown after its row went is rendered again on its next showing.
"""

import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from apps.batches.models import Candidate, Prompt
from apps.judging.diff import marked, word_diff
from apps.judging.markdown import render_guidelines, render_markdown
from apps.judging.models import Rendering

logger = logging.getLogger(__name__)

# Change it whenever the renderer's output changes (markdown.py, its bounds or its allow-list):
# stored renderings of the old version are then left alone, and each text is rendered again.
RENDERER_VERSION = "2"  # 2: links open in a new tab (target="_blank")
CHUNK = 500


def text_digest(text: str) -> str:
    data = f"{RENDERER_VERSION}\0{text}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def message_text(raw: Any) -> str:
    """The text of one conversation message as the page shows it (older rows may hold others
    than {"role", "content"} objects)."""
    content = raw.get("content") if isinstance(raw, dict) else raw
    return content if isinstance(content, str) else str(content or "")


def prompt_texts(content: Any) -> list[str]:
    """The texts of a prompt: itself, or each message of a conversation."""
    if isinstance(content, list):
        return [message_text(raw) for raw in content]
    return [content if isinstance(content, str) else str(content or "")]


def _store(rows: list[Rendering]) -> None:
    """Stores renderings; one another process stored first stays (same digest, same HTML)."""
    try:
        with transaction.atomic():
            Rendering.objects.bulk_create(rows, batch_size=CHUNK, ignore_conflicts=True)
    except DatabaseError:
        # Storing is an optimisation: the page has its HTML either way.
        logger.exception("storing %s renderings failed", len(rows))


# Rows a statement of renderings_prune deletes: each chunk is its own short transaction, so that
# a prune of millions of rows never holds one long lock or one long transaction.
PRUNE_CHUNK = 5000


@dataclass(frozen=True)
class Pruned:
    """What renderings_prune did: the rows deleted, the cutoff (the rows stored before it were
    the ones to go), and the rows left (the table's size after it)."""

    deleted: int
    cutoff: datetime
    left: int


def renderings_prune(*, older_than: timedelta, chunk: int = PRUNE_CHUNK) -> Pruned:
    """Deletes the stored renderings (texts' HTML and pairs' diffs) stored before now less
    `older_than`, `chunk` rows a statement. Safe at any time: a text shown after its rendering
    went is rendered again then, and stored anew (so a text still in use costs one rendering
    per period, about 0.2 ms)."""
    if older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    cutoff = timezone.now() - older_than
    old = Rendering.objects.filter(created_at__lt=cutoff)
    deleted = 0
    while True:
        digests = list(old.values_list("digest", flat=True)[:chunk])
        if not digests:
            break
        count, _ = Rendering.objects.filter(digest__in=digests, created_at__lt=cutoff).delete()
        deleted += count
    left = Rendering.objects.count()
    if deleted:
        logger.info("pruned %s renderings stored before %s; %s left", deleted, cutoff, left)
    return Pruned(deleted=deleted, cutoff=cutoff, left=left)


def renderings_store(*, texts: Iterable[str]) -> int:
    """Renders and stores each of `texts` that has no stored rendering. Returns how many it
    rendered. The import calls it, so that the judging page finds every text rendered."""
    rendered = 0
    iterator = iter(texts)
    while chunk := list(islice(iterator, CHUNK)):
        by_digest = {text_digest(text): text for text in chunk}
        stored = set(
            Rendering.objects.filter(digest__in=list(by_digest)).values_list("digest", flat=True)
        )
        rows = [
            Rendering(digest=digest, html=render_markdown(text))
            for digest, text in by_digest.items()
            if digest not in stored
        ]
        if rows:
            _store(rows)
        rendered += len(rows)
    return rendered


# Prompts rendered per round of `renderings_for_batch` (a round is one query for the prompts, one
# for their candidates, one for the renderings already stored, and one insert).
BATCH_CHUNK = 500


def renderings_for_batch(*, batch_id: int, after: int = 0, seconds: float) -> int | None:
    """Renders and stores the texts of a batch's prompts whose id is above `after` (and of their
    candidates), in id order, a chunk of prompts at a time, until `seconds` have passed (at
    least one chunk). Returns the last prompt id rendered, to go on from, or None when the
    batch has no more prompts (or no longer exists)."""
    deadline = time.monotonic() + seconds
    while True:
        prompts = list(
            Prompt.objects.filter(batch_id=batch_id, pk__gt=after)
            .order_by("pk")
            .values_list("pk", "content")[:BATCH_CHUNK]
        )
        if not prompts:
            return None
        texts = [text for _, content in prompts for text in prompt_texts(content)]
        texts.extend(
            Candidate.objects.filter(prompt_id__in=[pk for pk, _ in prompts]).values_list(
                "text", flat=True
            )
        )
        renderings_store(texts=texts)
        after = prompts[-1][0]
        if len(prompts) < BATCH_CHUNK:
            return None
        if time.monotonic() >= deadline:
            return after


def guidelines_digest(text: str) -> str:
    """The key of a project's guidelines' rendering: apart from the same text as a response,
    since guidelines are rendered as a document (render_guidelines)."""
    return text_digest(f"guidelines\0{text}")


def rendered_html(texts: Sequence[str], *, guidelines: str = "") -> list[SafeString]:
    """The HTML of each text, in order, then of `guidelines` if given: one query for those
    stored; any other is rendered (within the renderer's bounds) and stored now, once."""
    digests = [text_digest(text) for text in texts]
    renders = [render_markdown] * len(texts)
    sources = list(texts)
    if guidelines:
        digests.append(guidelines_digest(guidelines))
        renders.append(render_guidelines)
        sources.append(guidelines)
    found = dict(Rendering.objects.filter(digest__in=set(digests)).values_list("digest", "html"))
    missing = {
        digest: (render, text)
        for digest, render, text in zip(digests, renders, sources, strict=True)
        if digest not in found
    }
    rows = [
        Rendering(digest=digest, html=render(text)) for digest, (render, text) in missing.items()
    ]
    if rows:
        _store(rows)
        found.update((row.digest, row.html) for row in rows)
    # The stored HTML passed nh3's allow-list (or is escaped text) when it was rendered.
    return [mark_safe(found[digest]) for digest in digests]


@dataclass(frozen=True)
class StoredDiff:
    """The word diff of a pair as the page shows it: each side's escaped text with its marks."""

    too_long: bool
    left: SafeString
    right: SafeString


# A stored diff's html: "<left>" RIGHT_SIDE "<right>", or TOO_LONG. marked() writes no other
# markup than <mark> and escapes every "<" of the texts, so RIGHT_SIDE cannot occur in a side.
RIGHT_SIDE = "<!--right-->"
TOO_LONG = "too-long"


def diff_digest(left: str, right: str) -> str:
    data = f"diff\0{RENDERER_VERSION}\0{len(left)}\0{left}\0{right}"
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


def _diff_html(left: str, right: str) -> str:
    diff = word_diff(left, right)
    if diff.too_long:
        return TOO_LONG
    return f"{marked(diff.left, 'left')}{RIGHT_SIDE}{marked(diff.right, 'right')}"


def _stored_diff(html: str) -> StoredDiff:
    if html == TOO_LONG:
        return StoredDiff(True, mark_safe(""), mark_safe(""))
    left, _, right = html.partition(RIGHT_SIDE)
    # Built by marked(): every piece of the texts escaped, the only markup our <mark>.
    return StoredDiff(False, mark_safe(left), mark_safe(right))


def renderings_attach(*, leases: Sequence[Any], guidelines: str = "") -> SafeString:
    """Gives each lease's prompt and candidates their HTML, in one query for all of them:
    `prompt.html` (a string prompt) or `prompt.messages_html` (a conversation, one per message),
    and `html` on each candidate shown (`lease.shown` for a ranking, else left and right).
    A pair's lease gets `diff` too, its StoredDiff, computed the first time the pair is shown on
    those sides (most often as the prefetched card) and stored with the renderings.
    Returns the guidelines' HTML ("" without guidelines)."""
    slots: list[tuple[Any, str, int]] = []
    texts: list[str] = []
    pairs = [lease for lease in leases if lease is not None and lease.shown is None]
    keyed = [(diff_digest(lease.left.text or "", lease.right.text or ""), lease) for lease in pairs]
    stored = dict(
        Rendering.objects.filter(digest__in=[digest for digest, _ in keyed]).values_list(
            "digest", "html"
        )
    )
    new_diffs = {
        digest: Rendering(
            digest=digest, html=_diff_html(lease.left.text or "", lease.right.text or "")
        )
        for digest, lease in keyed
        if digest not in stored
    }
    if new_diffs:
        _store(list(new_diffs.values()))
        stored.update((digest, row.html) for digest, row in new_diffs.items())
    for digest, lease in keyed:
        lease.diff = _stored_diff(stored[digest])
    for lease in leases:
        if lease is None:
            continue
        prompt = lease.comparison.prompt
        for index, text in enumerate(prompt_texts(prompt.content)):
            slots.append((prompt, "messages_html" if prompt.is_conversation else "html", index))
            texts.append(text)
        for candidate in lease.shown or [lease.left, lease.right]:
            slots.append((candidate, "html", 0))
            texts.append(candidate.text or "")
    htmls = rendered_html(texts, guidelines=guidelines)
    for (target, name, index), html in zip(slots, htmls, strict=False):
        if name == "messages_html":
            if index == 0:
                target.messages_html = []
            target.messages_html.append(html)
        else:
            setattr(target, name, html)
    return htmls[-1] if guidelines else mark_safe("")
