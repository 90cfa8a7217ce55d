"""Exports, streamed row by row in constant memory.

Each function yields plain dicts in a stable order (by comparison, then by judgment id), so the
same data always gives the same file.
"""

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast

from apps.batches.models import Candidate, Comparison
from apps.judging.models import Choice, Judgment
from apps.projects.models import Project
from apps.projects.selectors import pseudonyms_for

CHUNK = 500
# Comparisons per page of the pairwise exports (their texts included).
PAGE = 2000
# Judgments per page of the judgments export (short rows; fewer pages, fewer plans of its joins).
JUDGMENTS_PAGE = 5000


class Pseudonyms:
    """Names annotators in exports by their per-project pseudonym, never by username."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.known = pseudonyms_for(project)

    def __call__(self, user_id: int) -> str:
        name = self.known.get(user_id)
        if name is None:
            # A former member: derive a stable name that does not reveal the account.
            digest = hmac.new(
                settings.SECRET_KEY.encode(),
                f"{self.project.pk}:{user_id}".encode(),
                hashlib.sha256,
            ).hexdigest()
            name = self.known[user_id] = "ann-x" + digest[:9]
        return name


def judgments_rows(*, project: Project, batch_id: int | None = None) -> Iterator[dict[str, Any]]:
    """The raw votes: one row per judgment, with every answer stored.

    `strength` and each criterion's answer are oriented to the candidates (above 0: candidate A,
    `candidate_a_id`, is better), whichever side each was shown on (`left_id`, `right_id`);
    `ranking` lists groups of response ids, best first (a group of two or more is a tie).
    """
    pseudonym = Pseudonyms(project)
    # Gold items test the annotators; they are not data, and exports leave them out.
    judgments = Judgment.objects.filter(comparison__project=project, comparison__is_gold=False)
    if batch_id is not None:
        judgments = judgments.filter(comparison__batch_id=batch_id)
    rows = judgments.order_by("id").values_list(
        "id",
        "comparison_id",
        "comparison__prompt__external_id",
        "annotator_id",
        "left__external_id",
        "right__external_id",
        "choice",
        "chosen__external_id",
        "rationale",
        "duration_ms",
        "created_at",
        "comparison__candidate_a__external_id",
        "strength",
        # As stored (JSON text): most are empty, and decoding "{}" costs more than the rest of
        # the row.
        Cast("criteria", output_field=TextField()),
        Cast("flags", output_field=TextField()),
        "ranking",
        "guideline_version",
    )
    # A page at a time by id (keyset), not a server-side cursor: PostgreSQL materializes a held
    # one whole (every join) before the first row.
    for page in _pages(rows, JUDGMENTS_PAGE):
        ranked = {pk for row in page if row[15] for group in row[15] for pk in group}
        external = (
            dict(Candidate.objects.filter(pk__in=ranked).values_list("id", "external_id"))
            if ranked
            else {}
        )
        for row in page:
            yield {
                "comparison_id": row[1],
                "prompt_id": row[2],
                "annotator": pseudonym(row[3]),
                "left_id": row[4],
                "right_id": row[5],
                "choice": row[6],
                "chosen_id": row[7],
                "rationale": row[8],
                "duration_ms": row[9],
                "created_at": row[10].isoformat(),
                "candidate_a_id": row[11],
                "strength": row[12],
                "criteria": _json(row[13]),
                "flags": _json(row[14]),
                "ranking": (
                    None if row[15] is None else [[external[pk] for pk in g] for g in row[15]]
                ),
                "guideline_version": row[16],
            }


def _json(text: str) -> Any:
    """A JSON column read as text: "{}" and "[]" without the decoder."""
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)


def _pages(rows: QuerySet[Any, Any], size: int) -> Iterator[list[Any]]:
    """A values_list queryset ordered by its first field, the id, a page of `size` rows at a
    time: each page is its own query (`id > the last page's last id`), so nothing is held open
    between pages and memory stays that of one page."""
    last = None
    while True:
        page = list((rows if last is None else rows.filter(id__gt=last))[:size])
        if page:
            yield page
        if len(page) < size:
            return
        last = page[-1][0]


def winner_of(votes: Counter[str]) -> str | None:
    """The option with strictly more votes than every other option, or None."""
    if not votes:
        return None
    (best, best_count), *rest = votes.most_common()
    if rest and rest[0][1] == best_count:
        return None
    return best


@dataclass(frozen=True, slots=True)
class PromptRef:
    """What an export reads of a prompt: a plain object, not a model instance (exports build
    hundreds of thousands of them)."""

    pk: int
    external_id: str
    content: Any


@dataclass(frozen=True, slots=True)
class CandidateRef:
    """What an export reads of a candidate."""

    pk: int
    external_id: str
    text: str
    model: str


@dataclass(frozen=True, slots=True)
class ComparisonRef:
    """What an export reads of a pairwise comparison, with its prompt and both candidates, under
    the model's attribute names."""

    pk: int
    batch_id: int
    prompt: PromptRef
    candidate_a: CandidateRef
    candidate_b: CandidateRef

    @property
    def prompt_id(self) -> int:
        return self.prompt.pk

    @property
    def candidate_a_id(self) -> int:
        return self.candidate_a.pk

    @property
    def candidate_b_id(self) -> int:
        return self.candidate_b.pk


@dataclass
class Tally:
    """One pairwise comparison with its votes counted per candidate.

    `votes` counts "a", "b", "tie" and "both_bad"; `winner` is the option with strictly more votes
    than each other one (None for a split); `annotators` are pseudonyms, in judgment order.
    """

    comparison: ComparisonRef
    votes: Counter[str]
    winner: str | None
    annotators: list[str]
    # Graded votes' strengths, oriented to the candidates (above 0: candidate A is better).
    strengths: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.votes.values())

    def ranked(self) -> tuple[CandidateRef, CandidateRef]:
        """(chosen, rejected) when a candidate won."""
        c = self.comparison
        return (
            (c.candidate_a, c.candidate_b) if self.winner == "a" else (c.candidate_b, c.candidate_a)
        )


def split_of(project_slug: str, prompt_id: str, test_fraction: float) -> str:
    """ "train" or "test" for a prompt: by a hash of its id, so every comparison of a prompt
    lands in the same half, the same way on every export and on every machine."""
    digest = hashlib.sha256(f"{project_slug}\x00{prompt_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def pairwise_tallies(
    *,
    project: Project,
    batch_id: int | None = None,
    min_votes: int = 1,
    min_agreement: float = 0.0,
    split: str | None = None,
    test_fraction: float = 0.1,
) -> Iterator[Tally]:
    """Every judged pairwise comparison, by id, in chunks: gold and listwise ones left out, and
    those with fewer than `min_votes` votes or whose majority option holds less than
    `min_agreement` of them; with `split`, only the prompts of that half (split_of)."""
    pseudonym = Pseudonyms(project)
    # Listwise comparisons (rankings) are not pairs; the export issue turns them into pairs.
    comparisons = Comparison.objects.filter(
        project=project, judgment_count__gt=0, is_gold=False, candidate_ids__isnull=True
    )
    if batch_id is not None:
        comparisons = comparisons.filter(batch_id=batch_id)
    # Plain tuples, a page at a time by id (keyset), and each page's votes in one query: no
    # model instances, and no server-side cursor (which PostgreSQL materializes whole, texts
    # included, before the first row when it is held outside a transaction).
    rows = comparisons.order_by("id").values_list(
        "id",
        "batch_id",
        "prompt_id",
        "prompt__external_id",
        "prompt__content",
        "candidate_a_id",
        "candidate_a__external_id",
        "candidate_a__text",
        "candidate_a__model",
        "candidate_b_id",
        "candidate_b__external_id",
        "candidate_b__text",
        "candidate_b__model",
    )
    tie, both_bad = str(Choice.TIE), str(Choice.BOTH_BAD)
    for page in _pages(rows, PAGE):
        # The page's votes, by comparison then judgment id; those of comparisons left out
        # above (gold, listwise, another batch) fall in the same range and are skipped.
        votes_of = Judgment.objects.filter(
            comparison_id__gte=page[0][0], comparison_id__lte=page[-1][0]
        )
        if batch_id is not None:
            votes_of = votes_of.filter(batch_id=batch_id)
        judgments = list(
            votes_of.order_by("comparison_id", "id").values_list(
                "comparison_id", "annotator_id", "choice", "chosen_id", "strength"
            )
        )
        at, end = 0, len(judgments)
        for row in page:
            comparison_id, candidate_a_id = row[0], row[5]
            while at < end and judgments[at][0] < comparison_id:
                at += 1
            votes: Counter[str] = Counter()
            annotators = []
            strengths = []
            while at < end and judgments[at][0] == comparison_id:
                _, annotator_id, choice, chosen_id, strength = judgments[at]
                at += 1
                if strength is not None:
                    strengths.append(strength)
                if choice in (tie, both_bad):
                    votes[choice] += 1
                elif chosen_id == candidate_a_id:
                    votes["a"] += 1
                else:
                    votes["b"] += 1
                annotators.append(pseudonym(annotator_id))
            if split is not None and split_of(project.slug, row[3], test_fraction) != split:
                continue
            total = sum(votes.values())
            if total < min_votes or (votes.most_common(1)[0][1] / total) < min_agreement:
                continue
            comparison = ComparisonRef(
                pk=comparison_id,
                batch_id=row[1],
                prompt=PromptRef(pk=row[2], external_id=row[3], content=row[4]),
                candidate_a=CandidateRef(pk=row[5], external_id=row[6], text=row[7], model=row[8]),
                candidate_b=CandidateRef(
                    pk=row[9], external_id=row[10], text=row[11], model=row[12]
                ),
            )
            yield Tally(comparison, votes, winner_of(votes), annotators, strengths)


def preference_metadata(tally: Tally) -> dict[str, Any]:
    """The evidence every chosen/rejected row carries, after its training fields."""
    chosen, rejected = tally.ranked()
    winner, votes = tally.winner, tally.votes
    return {
        "comparison_id": tally.comparison.pk,
        "prompt_id": tally.comparison.prompt.external_id,
        "chosen_id": chosen.external_id,
        "rejected_id": rejected.external_id,
        "chosen_model": chosen.model,
        "rejected_model": rejected.model,
        "votes": {
            "chosen": votes[winner or ""],
            "rejected": votes["b" if winner == "a" else "a"],
            "tie": votes[Choice.TIE],
            "both_bad": votes[Choice.BOTH_BAD],
        },
        "n_annotators": tally.total,
        "agreement": round(votes[winner or ""] / tally.total, 4),
        "annotators": tally.annotators,
        "batch": tally.comparison.batch_id,
        **strength_fields(tally.strengths, chosen_is_a=winner == "a"),
    }


# Llama 2's margin for each grade of "how much better": significantly 1, better 2/3, slightly
# 1/3, negligibly better or unsure 0.
MARGINS = {3: 1.0, 2: 2 / 3, 1: 1 / 3, 0: 0.0}


def strength_fields(strengths: list[int], *, chosen_is_a: bool) -> dict[str, Any]:
    """`strength_mean` (the graded votes' mean strength toward the chosen response, -3..3) and
    `margin` (the mean of Llama 2's margins, signed toward the chosen response); both null
    without graded votes."""
    if not strengths:
        return {"strength_mean": None, "margin": None}
    toward = [s if chosen_is_a else -s for s in strengths]
    signed = [MARGINS[abs(s)] * (1 if s > 0 else -1) for s in toward]
    return {
        "strength_mean": round(sum(toward) / len(toward), 4),
        "margin": round(sum(signed) / len(signed), 4),
    }


def trl_rows(
    *,
    project: Project,
    batch_id: int | None = None,
    min_votes: int = 1,
    min_agreement: float = 0.0,
    split: str | None = None,
    test_fraction: float = 0.1,
) -> Iterator[dict[str, Any]]:
    """One row per comparison whose votes name a winning candidate, in TRL's preference format.

    Votes are counted per candidate (not per screen side): "a", "b", "tie" and "both_bad".
    A comparison is exported when a candidate has strictly more votes than each other option.
    """
    tallies = pairwise_tallies(
        project=project,
        batch_id=batch_id,
        min_votes=min_votes,
        min_agreement=min_agreement,
        split=split,
        test_fraction=test_fraction,
    )
    for tally in tallies:
        if tally.winner not in ("a", "b"):
            continue
        chosen, rejected = tally.ranked()
        prompt = tally.comparison.prompt.content
        if isinstance(prompt, list):
            row: dict[str, Any] = {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": chosen.text}],
                "rejected": [{"role": "assistant", "content": rejected.text}],
            }
        else:
            row = {"prompt": prompt, "chosen": chosen.text, "rejected": rejected.text}
        row.update(preference_metadata(tally))
        yield row
