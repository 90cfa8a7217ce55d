"""Exports, streamed row by row in constant memory.

Each function yields plain dicts in a stable order (by comparison, then by judgment id), so the
same data always gives the same file.
"""

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from django.db.models import Exists, F, Func, OuterRef, QuerySet, TextField
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast

from annotate.db import postgresql
from apps.agreement.labels import CrowdLabels, crowd_labels
from apps.agreement.reliability import ReliabilityModel, reliability_model
from apps.agreement.stats import VoteColumns, stats_votes
from apps.batches.honeypots import honeypot_q
from apps.batches.models import Candidate, Comparison
from apps.exports.options import Options
from apps.judging.models import Choice, Judgment, Source
from apps.projects.models import Project
from apps.projects.selectors import Pseudonyms

CHUNK = 500
# Comparisons per page of the pairwise exports (their texts included).
PAGE = 2000
# Judgments per page of the judgments export (short rows; fewer pages, fewer plans of its joins).
JUDGMENTS_PAGE = 5000


class IsoformatUTC(Func):
    """A timestamp as `datetime.isoformat()` writes an aware UTC datetime, written by PostgreSQL
    ("2026-11-01T12:00:00.250000+00:00", without the fraction when it is zero): reading the
    timestamp into a datetime and formatting it again cost the judgments export about a third
    of its Python time. PostgreSQL only (elsewhere read the timestamp itself)."""

    output_field = TextField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, Any]:
        sql, params = compiler.compile(self.source_expressions[0])
        utc = f"({sql} AT TIME ZONE 'UTC')"
        text = (
            f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
            f"CASE WHEN to_char({utc}, 'US') = '000000' THEN '' ELSE to_char({utc}, '.US') END "
            "|| '+00:00'"
        )
        return text, (*params, *params, *params)


def _isoformat(value: datetime | str) -> str:
    return value if isinstance(value, str) else value.isoformat()


def judgments_rows(*, project: Project, options: Options) -> Iterator[dict[str, Any]]:
    """The raw votes: one row per judgment, with every answer stored.

    `strength` and each criterion's answer are oriented to the candidates (above 0: candidate A,
    `candidate_a_id`, is better), whichever side each was shown on (`left_id`, `right_id`);
    `ranking` lists groups of response ids, best first (a group of two or more is a tie).
    `source` says whose vote it is: "human" or "ai" (an AI judge's).
    Filters (`options`): `sources` (people's votes by default); `batch_id`; gold votes only with
    `include_gold`; votes made at or after `since`; `include_ties=False` drops tie and both-bad
    votes; `split` keeps one half by prompt (split_of).
    """
    pseudonym = Pseudonyms(project)
    # Gold items test the annotators; they are not data, and exports leave them out by default.
    judgments = Judgment.objects.filter(
        comparison__project=project, invalidated_at__isnull=True, source__in=options.sources
    )
    if not options.include_gold:
        judgments = judgments.filter(comparison__is_gold=False)
    if options.batch_id is not None:
        judgments = judgments.filter(comparison__batch_id=options.batch_id)
    if options.since is not None:
        judgments = judgments.filter(created_at__gte=options.since)
    if not options.include_ties:
        judgments = judgments.exclude(choice__in=(Choice.TIE, Choice.BOTH_BAD))
    split, fraction = options.split, options.test_fraction
    # A page at a time by id (keyset), not a server-side cursor: PostgreSQL materializes a held
    # one whole (every join) before the first row.
    for page in keyset_pages(judgment_values(judgments, text_times=True), JUDGMENTS_PAGE):
        if split is not None:
            page = [row for row in page if split_of(project.slug, row[2], fraction) == split]
        yield from judgment_rows_of(page, pseudonym)


def judgment_values(
    judgments: QuerySet[Judgment], *, text_times: bool = False, named: bool = False
) -> QuerySet[Any]:
    """What a judgment row is read from, as tuples (`judgment_rows_of` builds the rows),
    ordered by id, their first field. `text_times`: on PostgreSQL, `created_at` comes as the
    text of the export (see IsoformatUTC); else it is a datetime. `named`: named tuples, for
    the API's cursor pagination, which reads each row's `id`."""
    return judgments.order_by("id").values_list(
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
        (
            IsoformatUTC(F("created_at"))
            if text_times and postgresql(judgments.db)
            else "created_at"
        ),
        "comparison__candidate_a__external_id",
        "strength",
        # As stored (JSON text): most are empty, and decoding "{}" costs more than the rest of
        # the row.
        Cast("criteria", output_field=TextField()),
        Cast("flags", output_field=TextField()),
        "ranking",
        "guideline_version",
        "gold_correct",
        "comparison__is_gold",
        "source",
        named=named,
    )


# Positions in `judgment_values`' tuples that the API's rows read besides the export's.
JUDGMENT_ID, JUDGMENT_CREATED_AT, JUDGMENT_GOLD_CORRECT = 0, 10, 17


def judgment_rows_of(
    page: Sequence[Sequence[Any]], pseudonym: Pseudonyms
) -> Iterator[dict[str, Any]]:
    """The `judgments` export's rows (the one definition of a judgment row; the API's judgment
    list adds to them) of a page of `judgment_values` tuples: the page's rankings' response
    ids are read in one query, not one per row, and so are its gold items' degradations (a
    generated honeypot's kind, "" for a hand-made gold item or any other)."""
    ranked = {pk for row in page if row[15] for group in row[15] for pk in group}
    external = (
        dict(Candidate.objects.filter(pk__in=ranked).values_list("id", "external_id"))
        if ranked
        else {}
    )
    gold = {row[1] for row in page if row[18]}
    degradation = (
        {
            pk: a or b
            for pk, a, b in Comparison.objects.filter(pk__in=gold)
            .filter(honeypot_q())
            .values_list("id", "candidate_a__degradation", "candidate_b__degradation")
        }
        if gold
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
            "created_at": _isoformat(row[10]),
            "candidate_a_id": row[11],
            "strength": row[12],
            "criteria": _json(row[13]),
            "flags": _json(row[14]),
            "ranking": (None if row[15] is None else [[external[pk] for pk in g] for g in row[15]]),
            "guideline_version": row[16],
            "gold": row[18],
            "degradation": degradation.get(row[1], ""),
            "source": row[19],
        }


def _json(text: str) -> Any:
    """A JSON column read as text: "{}" and "[]" without the decoder."""
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)


def keyset_pages(rows: QuerySet[Any, Any], size: int) -> Iterator[list[Any]]:
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

    `votes` counts "a", "b", "tie" and "both_bad"; `winner` is the option the aggregation picked
    (by default the one with strictly more votes than each other one; None for a split);
    `annotators` are pseudonyms, in judgment order.
    """

    comparison: ComparisonRef
    votes: Counter[str]
    winner: str | None
    annotators: list[str]
    # Graded votes' strengths, oriented to the candidates (above 0: candidate A is better).
    strengths: list[int] = field(default_factory=list)
    # Each vote's option ("a", "b", "tie", "both_bad") and whether candidate A was on the left,
    # in judgment order (empty when unknown: chosen_position is then null).
    options: list[str] = field(default_factory=list)
    left_a: list[bool] = field(default_factory=list)
    guideline_versions: list[int] = field(default_factory=list)
    # aggregate=reliability: the winning option's posterior.
    label_confidence: float | None = None
    # How many of the votes came from each source ("human", "ai").
    sources: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.votes.values())

    def ranked(self) -> tuple[CandidateRef, CandidateRef]:
        """(chosen, rejected) when a candidate won."""
        c = self.comparison
        return (
            (c.candidate_a, c.candidate_b) if self.winner == "a" else (c.candidate_b, c.candidate_a)
        )

    def chosen_position(self) -> float | None:
        """The share of the votes for the winner given with the winner shown on the left."""
        if self.winner not in ("a", "b") or not self.left_a:
            return None
        for_winner = [
            left_a == (self.winner == "a")
            for option, left_a in zip(self.options, self.left_a, strict=True)
            if option == self.winner
        ]
        if not for_winner:
            return None
        return round(sum(for_winner) / len(for_winner), 4)


def split_of(project_slug: str, prompt_id: str, test_fraction: float) -> str:
    """ "train" or "test" for a prompt: by a hash of its id, so every comparison of a prompt
    lands in the same half, the same way on every export and on every machine."""
    digest = hashlib.sha256(f"{project_slug}\x00{prompt_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


AGGREGATES = ("majority", "unanimous", "mean_strength", "reliability")
# What labels rows under aggregate=reliability: the crowd model on the overall choice of
# pairwise comparisons, Dawid-Skene on a criterion's answers and on rankings' pairs.
Labeller = CrowdLabels | ReliabilityModel


def reliability_labeller(
    *, project: Project, options: Options, votes: VoteColumns | None = None
) -> Labeller | None:
    """The fit behind `aggregate=reliability` for the pairwise comparisons: the crowd model
    (labels.py) on the overall choice, from `votes` (all of the project's `stats_votes`, every
    batch) when the caller already holds them; Dawid-Skene on a criterion's answers, as the
    crowd model is of the overall choice only. None without votes."""
    if options.criterion is not None:
        return reliability_model(
            project=project,
            include_gold=options.include_gold,
            criterion=options.criterion,
            sources=options.sources,
        )
    if votes is None:
        votes = stats_votes(project=project, sources=options.sources)
    return crowd_labels(votes, include_gold=options.include_gold)


def decide(
    aggregate: str,
    votes: Counter[str],
    strengths: list[int],
    ballots: list[tuple[int, str]],
    model: Labeller | None,
    comparison_id: int = 0,
) -> tuple[str | None, float | None]:
    """(winning option or None, label confidence or None) under an aggregation.

    - majority: the option with strictly more votes than every other one;
    - unanimous: the one option every vote gave;
    - mean_strength: the sign of the graded votes' mean strength ("a" above 0, "b" below, "tie"
      at 0); None without graded votes;
    - reliability: the crowd model's candidate more likely better (labels.py; by
      `comparison_id`) or the Dawid-Skene posterior's best option (reliability.py, from
      `ballots`), with that chance as the confidence; None on a tie in posterior.
    """
    if aggregate == "majority":
        return winner_of(votes), None
    if aggregate == "unanimous":
        options = [option for option, count in votes.items() if count]
        return (options[0] if len(options) == 1 else None), None
    if aggregate == "mean_strength":
        if not strengths:
            return None, None
        total = sum(strengths)
        return ("a" if total > 0 else "b" if total < 0 else Choice.TIE.value), None
    if aggregate == "reliability":
        if model is None:
            return None, None
        if isinstance(model, CrowdLabels):
            winner, confidence = model.decide(comparison_id, bool(votes["a"] or votes["b"]))
        else:
            winner, confidence = model.decide(ballots)
        return winner, None if confidence is None else round(confidence, 4)
    raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}")


def voted_since(since: datetime, sources: tuple[str, ...] = ("human",)) -> Exists:
    """A comparison filter: it has a valid vote of `sources` at or after `since` (what `since`
    keeps of the formats that count all of a comparison's votes)."""
    return Exists(
        Judgment.objects.filter(
            comparison=OuterRef("pk"),
            created_at__gte=since,
            invalidated_at__isnull=True,
            source__in=sources,
        )
    )


def voted_by(sources: tuple[str, ...]) -> Exists:
    """A comparison filter: it has a valid vote of `sources`. The comparisons' counters count
    people's votes (and those of an AI judge that counts toward the overlap) only, so an export
    of AI votes cannot go by `judgment_count`."""
    return Exists(
        Judgment.objects.filter(
            comparison=OuterRef("pk"), invalidated_at__isnull=True, source__in=sources
        )
    )


def judged_pairs(*, project: Project, options: Options) -> QuerySet[Comparison]:
    """The project's pairwise comparisons with at least one valid vote of `options.sources` (of
    `options.batch_id`):
    gold ones only with `include_gold`; with `models`, only those whose two candidates' models
    are among them; with `since`, only those with a valid vote at or after it."""
    batch_id, models, since = options.batch_id, options.models, options.since
    # Listwise comparisons are not pairs: their rankings become pairs in rankings.py.
    comparisons = Comparison.objects.filter(project=project, candidate_ids__isnull=True)
    if options.human_only:
        comparisons = comparisons.filter(judgment_count__gt=0)
    else:
        comparisons = comparisons.filter(voted_by(options.sources))
    if not options.include_gold:
        comparisons = comparisons.filter(is_gold=False)
    else:
        # A generated honeypot's degraded response is no one's answer: never training data.
        comparisons = comparisons.exclude(honeypot_q())
    if batch_id is not None:
        comparisons = comparisons.filter(batch_id=batch_id)
    if models is not None:
        comparisons = comparisons.filter(
            candidate_a__model__in=list(models), candidate_b__model__in=list(models)
        )
    if since is not None:
        comparisons = comparisons.filter(voted_since(since, options.sources))
    return comparisons


def pairwise_tallies(
    *, project: Project, options: Options, labeller: Labeller | None = None
) -> Iterator[Tally]:
    """Every judged pairwise comparison, by id, in chunks: gold (unless `include_gold`) and
    listwise ones left out, and those with fewer than `min_votes` votes or whose majority option
    holds less than `min_agreement` of them; with `split`, only the prompts of that half
    (split_of); with `models`, only comparisons whose two candidates' models are among them;
    with `since`, only comparisons with a vote at or after it (all their votes count); with
    `criterion`, the votes are that criterion's answers (votes without one are left out).
    The winner is picked by `aggregate` (see `decide`). All of them are `options`' fields;
    `labeller` is reliability's fit when the caller made it (reliability_labeller)."""
    aggregate, criterion, batch_id = options.aggregate, options.criterion, options.batch_id
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}")
    pseudonym = Pseudonyms(project)
    model = labeller
    if aggregate == "reliability" and model is None:
        model = reliability_labeller(project=project, options=options)
    comparisons = judged_pairs(project=project, options=options)
    split, test_fraction = options.split, options.test_fraction
    min_votes, min_agreement = options.min_votes, options.min_agreement
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
    answer = KeyTransform(criterion or "", "criteria")
    fields: list[Any] = [
        "comparison_id",
        "annotator_id",
        "choice",
        "chosen_id",
        "strength",
        "left_id",
        "guideline_version",
        "source",
    ]
    if criterion is not None:
        fields += [KeyTextTransform("option", answer), KeyTransform("strength", answer)]
    tie, both_bad = str(Choice.TIE), str(Choice.BOTH_BAD)
    for page in keyset_pages(rows, PAGE):
        # The page's valid votes, by comparison then judgment id; those of comparisons left
        # out above (gold, listwise, another batch, other models) fall in the same range and
        # are skipped.
        votes_of = Judgment.objects.filter(
            comparison_id__gte=page[0][0],
            comparison_id__lte=page[-1][0],
            invalidated_at__isnull=True,
            source__in=options.sources,
        )
        if batch_id is not None:
            votes_of = votes_of.filter(batch_id=batch_id)
        judgments = list(votes_of.order_by("comparison_id", "id").values_list(*fields))
        at, end = 0, len(judgments)
        for row in page:
            comparison_id, candidate_a_id = row[0], row[5]
            while at < end and judgments[at][0] < comparison_id:
                at += 1
            votes: Counter[str] = Counter()
            annotators = []
            strengths = []
            voted = []
            left_a = []
            versions = set()
            ballots = []
            by_source: Counter[str] = Counter()
            while at < end and judgments[at][0] == comparison_id:
                judgment = judgments[at]
                at += 1
                _, annotator_id, choice, chosen_id, strength, left_id, version = judgment[:7]
                source = judgment[7]
                if criterion is not None:
                    option, raw = judgment[8], judgment[9]
                    if option is None:
                        continue  # judged before the criterion was added
                    strength = None if raw is None else int(raw)
                elif choice in (tie, both_bad):
                    option = choice
                elif chosen_id == candidate_a_id:
                    option = "a"
                else:
                    option = "b"
                if strength is not None:
                    strengths.append(strength)
                votes[option] += 1
                by_source[source] += 1
                voted.append(option)
                left_a.append(left_id == candidate_a_id)
                if version is not None:
                    versions.add(version)
                ballots.append((annotator_id, option))
                annotators.append(pseudonym(annotator_id))
            if split is not None and split_of(project.slug, row[3], test_fraction) != split:
                continue
            total = sum(votes.values())
            if (
                not total
                or total < min_votes
                or (votes.most_common(1)[0][1] / total) < min_agreement
            ):
                continue
            winner, confidence = decide(aggregate, votes, strengths, ballots, model, comparison_id)
            comparison = ComparisonRef(
                pk=comparison_id,
                batch_id=row[1],
                prompt=PromptRef(pk=row[2], external_id=row[3], content=row[4]),
                candidate_a=CandidateRef(pk=row[5], external_id=row[6], text=row[7], model=row[8]),
                candidate_b=CandidateRef(
                    pk=row[9], external_id=row[10], text=row[11], model=row[12]
                ),
            )
            yield Tally(
                comparison,
                votes,
                winner,
                annotators,
                strengths,
                options=voted,
                left_a=left_a,
                guideline_versions=sorted(versions),
                label_confidence=confidence,
                sources=by_source,
            )


@dataclass(frozen=True)
class Shape:
    """What every row of a pairwise export holds, decided once, before the first row, from the
    project's scheme and the export's parameters (never from the rows, so that a streamed file
    never changes its mind halfway and every column has one type):

    - `conversational`: prompts as message lists and responses as assistant messages (the
      default), or text (`prompt_form=text`: see formats.text_prompt);
    - `graded`: `strength_mean` and `margin` (graded projects only: elsewhere every value
      would be null, which `datasets` types as null and TRL's RewardTrainer cannot read);
    - `confidence`: `label_confidence` (`aggregate=reliability` only);
    - `sides`: `chosen_position` (not in listwise projects: a ranking has no sides).
    """

    conversational: bool = True
    graded: bool = False
    confidence: bool = False
    sides: bool = True


def preference_metadata(tally: Tally, shape: Shape) -> dict[str, Any]:
    """The evidence every chosen/rejected row carries, after its training fields."""
    chosen, rejected = tally.ranked()
    winner, votes = tally.winner, tally.votes
    row = {
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
        "unanimous": votes[winner or ""] == tally.total,
        "annotators": tally.annotators,
        "batch": tally.comparison.batch_id,
    }
    if shape.graded:
        row.update(strength_fields(tally.strengths, chosen_is_a=winner == "a"))
    row.update(trust_fields(tally, shape))
    return row


def trust_fields(tally: Tally, shape: Shape) -> dict[str, Any]:
    """`label_confidence` (under reliability), `chosen_position` (where votes have sides),
    `guideline_versions` and `votes_by_source` (how many of the votes were people's and how
    many AI judges': both keys always, so the column has one type): the last fields of every
    pairwise row, kto's too."""
    row: dict[str, Any] = {}
    if shape.confidence:
        row["label_confidence"] = tally.label_confidence
    if shape.sides:
        row["chosen_position"] = tally.chosen_position()
    row["guideline_versions"] = tally.guideline_versions
    row["votes_by_source"] = votes_by_source(tally.sources)
    return row


def votes_by_source(sources: Counter[str]) -> dict[str, int]:
    """{"human": n, "ai": m}: how many of a row's votes came from each source."""
    return {source: sources[source] for source in Source.values}


# Llama 2's margin for each grade of "how much better": significantly 1, better 2/3, slightly
# 1/3, negligibly better or unsure 0.
MARGINS = {3: 1.0, 2: 2 / 3, 1: 1 / 3, 0: 0.0}


def strength_fields(strengths: list[int], *, chosen_is_a: bool) -> dict[str, float]:
    """`strength_mean` (the graded votes' mean strength toward the chosen response, -3..3) and
    `margin` (the mean of Llama 2's margins, signed toward the chosen response); both 0.0
    without graded votes (a vote judged before the project was graded), never null: TRL's
    RewardTrainer reads `margin` on every row once the column exists."""
    if not strengths:
        return {"strength_mean": 0.0, "margin": 0.0}
    toward = [s if chosen_is_a else -s for s in strengths]
    signed = [MARGINS[abs(s)] * (1 if s > 0 else -1) for s in toward]
    return {
        "strength_mean": round(sum(toward) / len(toward), 4),
        "margin": round(sum(signed) / len(signed), 4),
    }


HONEYPOTS_MEANING = (
    "Generated gold items (a response against a degraded copy of it, made at import): per "
    "kind of degradation, the items, the valid answers to them and the share of answers that "
    "chose the good response; the same per annotator. Low accuracy on a kind means annotators "
    "miss that kind of flaw (or the kind is too subtle to test with)."
)


def honeypot_stats(
    *, project: Project, votes: VoteColumns, batch_id: int | None = None
) -> dict[str, Any]:
    """/stats/'s `honeypots` section, from the project's (or batch's) votes as `stats_votes`
    read them and one query for the honeypots' comparisons and kinds."""
    comparisons = Comparison.objects.filter(project=project, is_gold=True).filter(honeypot_q())
    if batch_id is not None:
        comparisons = comparisons.filter(batch_id=batch_id)
    kind_of = {
        pk: a or b
        for pk, a, b in comparisons.values_list(
            "id", "candidate_a__degradation", "candidate_b__degradation"
        )
    }
    kinds = sorted(set(kind_of.values()))
    items = Counter(kind_of.values())
    answered = votes.gold_correct >= 0
    ids = np.fromiter(kind_of, dtype=np.int64, count=len(kind_of))
    on_honeypot = np.isin(votes.comparison, ids) & answered
    correct = votes.gold_correct == 1

    def figures(mask: np.ndarray) -> dict[str, Any]:
        answers = int(mask.sum())
        right = int((mask & correct).sum())
        return {"answers": answers, "accuracy": round(right / answers, 4) if answers else None}

    by_kind: dict[str, Any] = {}
    for kind in kinds:
        of_kind = np.fromiter(
            (pk for pk, k in kind_of.items() if k == kind), dtype=np.int64, count=items[kind]
        )
        by_kind[kind] = {
            "items": items[kind],
            **figures(on_honeypot & np.isin(votes.comparison, of_kind)),
        }
    annotators = [
        {"annotator": votes.names[code], **figures(on_honeypot & (votes.annotator == code))}
        for code in sorted(set(votes.annotator[on_honeypot].tolist()))
    ]
    return {
        "meaning": HONEYPOTS_MEANING,
        "items": len(kind_of),
        **figures(on_honeypot),
        "kinds": by_kind,
        "annotators": annotators,
    }
