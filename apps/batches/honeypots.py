"""Generated gold items ("honeypots"): a response against a degraded copy of it.

A project's `honeypot_rate` draws prompts at import; a drawn prompt gets one more candidate, D,
made from one of its responses, X, and one more comparison, X against D, stored as a gold item
whose known answer is X. D is made one of three ways (`Degradation`):

- truncated: X (of at least TRUNCATE_MIN_WORDS words) cut at 30-70% of its words, in the middle
  of a sentence, with no final punctuation;
- off_topic: a response of another prompt of the same import (from a reservoir of the last
  RESERVOIR_SIZE responses read);
- shuffled: X's sentences (at least SHUFFLE_MIN_SENTENCES; never a text with a code fence) in
  another order.

The kind is drawn among those that apply to X, the others tried in turn; a prompt none applies
to (a one-sentence, short first prompt) gets no honeypot, nor does a prompt with fewer than 2
candidates (imported with candidates optional: it has no comparison to join). Every draw comes
from one generator seeded per batch (IMPORT_HONEYPOT_SEED, else the batch's id), read in file
order: the same file gets the same honeypots whichever writer stores it, and however it is cut
into chunks.

D's id is neutral (the annotators' API shows response ids), its model empty (so that model
statistics never count it); the judging page shows X's model label on D's side.
"""

import random
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce

from apps.batches.import_format import MIN_CANDIDATES, ParsedCandidate, ParsedPrompt
from apps.batches.models import Candidate, Comparison, Degradation, GoldAnswer

TRUNCATE_MIN_WORDS = 12
TRUNCATE_FROM, TRUNCATE_TO = 0.3, 0.7
SHUFFLE_MIN_SENTENCES = 3
RESERVOIR_SIZE = 32
KINDS = (Degradation.TRUNCATED, Degradation.OFF_TOPIC, Degradation.SHUFFLED)

_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# What a truncated text may not end with: a sentence's or a clause's end.
_TRAILING = ".,;:!?…-\u2013\u2014\"'\u201c\u201d\u2018\u2019»)] \t\n"
_FENCES = ("```", "~~~")


def truncated(text: str, rng: random.Random) -> str | None:
    """`text` cut after 30-70% of its words, inside a sentence, its last punctuation removed;
    None for a text under TRUNCATE_MIN_WORDS words or with no such cut."""
    words = list(_WORD.finditer(text))
    if len(words) < TRUNCATE_MIN_WORDS:
        return None
    low = max(1, -(-len(words) * 3 // 10))  # ceil(30%)
    high = max(low, len(words) * 7 // 10)
    # A cut after a word that ends a sentence would look like a whole, shorter answer.
    cuts = [k for k in range(low, high + 1) if not words[k - 1].group().endswith((".", "!", "?"))]
    if not cuts:
        return None
    k = rng.choice(cuts)
    cut = text[: words[k - 1].end()].rstrip(_TRAILING)
    if not cut or cut == text:
        return None
    return cut


def sentences(text: str) -> list[str]:
    """The sentences of a text: split after ".", "!" or "?" and the spaces that follow."""
    return [part for part in _SENTENCE_END.split(text.strip()) if part]


def shuffled(text: str, rng: random.Random) -> str | None:
    """`text`'s sentences in another order, joined by spaces; None for a text with a code fence,
    with fewer than SHUFFLE_MIN_SENTENCES sentences, or whose sentences are all alike."""
    if any(fence in text for fence in _FENCES):
        return None
    parts = sentences(text)
    if len(parts) < SHUFFLE_MIN_SENTENCES or len(set(parts)) < 2:
        return None
    order = parts[:]
    rng.shuffle(order)
    if order == parts:  # the shuffle gave them back: turn them by one (they are not all alike)
        order = parts[1:] + parts[:1]
    result = " ".join(order)
    return None if result == text else result


@dataclass(frozen=True, slots=True)
class Honeypot:
    """What a drawn prompt gets: D, which of the prompt's candidates it degrades (`source`, an
    index), and which side of the comparison D takes."""

    candidate: ParsedCandidate
    kind: str
    source: int
    degraded_first: bool

    @property
    def gold_answer(self) -> str:
        """The known answer, oriented to the comparison's candidates: the other side (X)."""
        return GoldAnswer.B if self.degraded_first else GoldAnswer.A

    def pair(self, source_id: int, degraded_id: int) -> tuple[int, int]:
        """(candidate_a, candidate_b) of the comparison, from X's and D's row ids."""
        return (degraded_id, source_id) if self.degraded_first else (source_id, degraded_id)


def honeypot_seed(batch_id: int) -> str:
    seed = getattr(settings, "IMPORT_HONEYPOT_SEED", None)
    return f"honeypots:{batch_id}" if seed is None else str(seed)


class HoneypotMaker:
    """Draws the honeypots of one import, prompt after prompt in file order (`make`)."""

    def __init__(self, *, rate: float, seed: str) -> None:
        self.rate = rate
        self.random = random.Random(seed)  # noqa: S311 (a spread, not a secret)
        # (prompt id, response text) of the last responses read: off_topic's material.
        self.reservoir: deque[tuple[str, str]] = deque(maxlen=RESERVOIR_SIZE)
        self.made: dict[str, int] = dict.fromkeys(KINDS, 0)

    @property
    def count(self) -> int:
        return sum(self.made.values())

    def make(self, prompt: ParsedPrompt) -> Honeypot | None:
        """The prompt's honeypot, or None (not drawn, or no degradation applies)."""
        honeypot = None
        # A honeypot is one more comparison among the prompt's own: a prompt with fewer
        # candidates than a pair (imported with candidates optional, waiting for its responses)
        # has none to join, nor an X to degrade. It is not drawn (no draw is spent on it).
        drawable = len(prompt.candidates) >= MIN_CANDIDATES
        if self.rate > 0 and drawable and self.random.random() < self.rate:
            honeypot = self._degrade(prompt)
        for candidate in prompt.candidates:
            self.reservoir.append((prompt.external_id, candidate.text))
        return honeypot

    def _degrade(self, prompt: ParsedPrompt) -> Honeypot | None:
        rng = self.random
        sources = list(range(len(prompt.candidates)))
        rng.shuffle(sources)
        kinds = list(KINDS)
        rng.shuffle(kinds)
        for source in sources:
            original = prompt.candidates[source]
            for kind in kinds:
                text = self._text(kind, prompt, original.text)
                if text is not None and text != original.text and text.strip():
                    self.made[kind] += 1
                    return Honeypot(
                        candidate=ParsedCandidate(
                            external_id=self._id(prompt),
                            text=text,
                            model="",
                            params={},
                            metadata={"honeypot_of": original.external_id},
                        ),
                        kind=kind,
                        source=source,
                        degraded_first=rng.random() < 0.5,
                    )
        return None

    def _text(self, kind: str, prompt: ParsedPrompt, text: str) -> str | None:
        if kind == Degradation.TRUNCATED:
            return truncated(text, self.random)
        if kind == Degradation.SHUFFLED:
            return shuffled(text, self.random)
        others = [
            other for pid, other in self.reservoir if pid != prompt.external_id and other != text
        ]
        return self.random.choice(others) if others else None

    def _id(self, prompt: ParsedPrompt) -> str:
        """A neutral id, unique within the prompt: nothing in it tells D from the others."""
        taken = {c.external_id for c in prompt.candidates}
        while True:
            external_id = f"r{self.random.getrandbits(32):08x}"
            if external_id not in taken:
                return external_id


# Reading them back.


def honeypot_q(prefix: str = "") -> Q:
    """Comparisons (under `prefix`, e.g. "comparison__") that are generated honeypots: one of
    their candidates is degraded."""
    return Q(**{f"{prefix}candidate_a__degradation__gt": ""}) | Q(
        **{f"{prefix}candidate_b__degradation__gt": ""}
    )


def batch_honeypot_count() -> Any:
    """An annotation of batches: how many honeypots their import made (a subquery over their
    gold comparisons only, which the queue_gold index finds)."""
    counted = (
        Comparison.objects.filter(batch=OuterRef("pk"), is_gold=True)
        .filter(honeypot_q())
        .order_by()
        .values("batch")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def honeypots_of_batch(batch_id: int) -> int:
    return Comparison.objects.filter(batch_id=batch_id, is_gold=True).filter(honeypot_q()).count()


def label_models(lease: Any) -> None:
    """On the judging page with the models shown: D's side shows X's model label (the other
    side's), not "model not given", which would give the honeypot away. In memory only.

    The queue's lease loads its candidates without `model` (deferred): both sides' labels are
    read here in one query, which the page's two deferred reads would have cost two."""
    if lease is None:
        return
    left, right = getattr(lease, "left", None), getattr(lease, "right", None)
    if left is None or right is None:
        return
    if {"model", "degradation"} & (left.get_deferred_fields() | right.get_deferred_fields()):
        rows = {
            pk: (model, degradation)
            for pk, model, degradation in Candidate.objects.filter(
                pk__in=[left.pk, right.pk]
            ).values_list("id", "model", "degradation")
        }
        for side in (left, right):
            side.model, side.degradation = rows.get(side.pk, ("", ""))
    if left.degradation:
        left.model = right.model
    elif right.degradation:
        right.model = left.model
