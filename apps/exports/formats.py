"""The export formats: each a generator of plain dicts, in the field names of its reference format.

Pairwise formats read the same per-comparison tallies as `trl` (see `selectors.pairwise_tallies`),
so they agree on which comparisons have a winner; `arena` and `judgments` have one row per vote.
All of them stream in chunks and name annotators by pseudonym.
"""

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from apps.exports import selectors
from apps.exports.options import CONVERSATIONAL, Options
from apps.exports.rankings import listwise_rows, ranking_tallies
from apps.exports.selectors import (
    CandidateRef,
    Labeller,
    Shape,
    Tally,
    judged_pairs,
    judgments_rows,
    keyset_pages,
    pairwise_tallies,
    preference_metadata,
    split_of,
    trust_fields,
)
from apps.judging.models import Choice, Judgment
from apps.projects.models import Project, Scheme
from apps.projects.selectors import Pseudonyms

Messages = list[dict[str, str]]


def tallies(
    project: Project, options: Options, labeller: Labeller | None = None
) -> Iterator[Tally]:
    """The pairwise comparisons' tallies and the pairs of the listwise ones' rankings,
    merged by comparison id (the two never share one); `labeller`: the pairwise comparisons'
    fit under `aggregate=reliability`, when the caller made it."""
    return heapq.merge(
        pairwise_tallies(project=project, options=options, labeller=labeller),
        ranking_tallies(project=project, options=options),
        key=lambda tally: tally.comparison.pk,
    )


def shape_of(project: Project, options: Options) -> Shape:
    """What every row of the export holds, decided before the first row is read, from the
    project's scheme and the parameters alone: no query, and no row can change it."""
    return Shape(
        conversational=options.prompt_form == CONVERSATIONAL,
        graded=project.scheme == Scheme.GRADED,
        confidence=options.aggregate == "reliability",
        sides=project.scheme != Scheme.LISTWISE,
    )


def messages_of(prompt: str | Messages) -> Messages:
    """A prompt as a conversation: its own messages, or one user message for a string."""
    if isinstance(prompt, list):
        return list(prompt)
    return [{"role": "user", "content": prompt}]


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def _winners(project: Project, options: Options) -> Iterator[Tally]:
    for tally in tallies(project, options):
        if tally.winner in ("a", "b"):
            yield tally


def prompt_in(prompt: str | Messages, shape: Shape) -> str | Messages:
    """A prompt in the export's form: its messages (a string is one user message), or the text
    form's transcript ending with `TEXT_PROMPT_END`."""
    return messages_of(prompt) if shape.conversational else text_prompt(prompt)


def response_in(text: str, shape: Shape) -> str | Messages:
    """A response in the export's form: one assistant message, or the text after a space."""
    return [assistant(text)] if shape.conversational else TEXT_RESPONSE_START + text


def trl_rows(*, project: Project, options: Options) -> Iterator[dict[str, Any]]:
    """TRL's explicit-prompt preference format: `prompt`, `chosen`, `rejected`, then the
    evidence."""
    shape = shape_of(project, options)
    for tally in _winners(project, options):
        chosen, rejected = tally.ranked()
        prompt = tally.comparison.prompt.content
        yield {
            "prompt": prompt_in(prompt, shape),
            "chosen": response_in(chosen.text, shape),
            "rejected": response_in(rejected.text, shape),
            **preference_metadata(tally, shape),
        }


def trl_implicit_rows(*, project: Project, options: Options) -> Iterator[dict[str, Any]]:
    """TRL's implicit-prompt preference format: whole conversations (or transcripts), the
    prompt inside each."""
    shape = shape_of(project, options)
    for tally in _winners(project, options):
        chosen, rejected = tally.ranked()
        prompt = tally.comparison.prompt.content
        if shape.conversational:
            messages = messages_of(prompt)
            whole: tuple[Any, Any] = (
                [*messages, assistant(chosen.text)],
                [*messages, assistant(rejected.text)],
            )
        else:
            whole = (hh_transcript(prompt, chosen.text), hh_transcript(prompt, rejected.text))
        yield {"chosen": whole[0], "rejected": whole[1], **preference_metadata(tally, shape)}


def kto_rows(*, project: Project, options: Options) -> Iterator[dict[str, Any]]:
    """TRL's unpaired (KTO) format: the winner's row true, then the loser's false.

    With `both_bad`, a comparison whose majority is both bad gives a false row for candidate A,
    then for candidate B. `votes` counts from the row's candidate: its own votes, the other
    candidate's, ties and both-bad; `agreement` is the majority's share of all votes.
    """
    shape = shape_of(project, options)
    for tally in tallies(project, options):
        comparison = tally.comparison
        labelled: list[tuple[CandidateRef, bool]]
        if tally.winner in ("a", "b"):
            chosen, rejected = tally.ranked()
            labelled = [(chosen, True), (rejected, False)]
        elif tally.winner == Choice.BOTH_BAD and options.both_bad:
            labelled = [(comparison.candidate_a, False), (comparison.candidate_b, False)]
        else:
            continue
        prompt = prompt_in(comparison.prompt.content, shape)
        for candidate, label in labelled:
            own = "a" if candidate.pk == comparison.candidate_a_id else "b"
            yield {
                "prompt": prompt,
                "completion": response_in(candidate.text, shape),
                "label": label,
                "comparison_id": comparison.pk,
                "prompt_id": comparison.prompt.external_id,
                "candidate_id": candidate.external_id,
                "model": candidate.model,
                "votes": {
                    "candidate": tally.votes[own],
                    "other": tally.votes["b" if own == "a" else "a"],
                    "tie": tally.votes[Choice.TIE],
                    "both_bad": tally.votes[Choice.BOTH_BAD],
                },
                "n_annotators": tally.total,
                "agreement": round(tally.votes[tally.winner or ""] / tally.total, 4),
                "unanimous": tally.votes[tally.winner or ""] == tally.total,
                "annotators": tally.annotators,
                "batch": comparison.batch_id,
                **trust_fields(tally, shape),
            }


# HH-RLHF has two speakers. System and tool messages are input the assistant reads, so they are
# the Human's; turns of one speaker in a row merge, so that the transcript alternates as HH's does.
HH_SPEAKERS = {"system": "Human", "user": "Human", "tool": "Human", "assistant": "Assistant"}


# The text form (`prompt_form=text`) ends every prompt with this and starts every response with
# a space: prompt + response is the HH transcript, and the prompt ends on `:`, which byte-level
# BPE tokenizers split from a following ` word` (a prompt ending in whitespace would be
# tokenized differently alone and before its response).
TEXT_PROMPT_END = "\n\nAssistant:"
TEXT_RESPONSE_START = " "


def text_prompt(prompt: str | Messages) -> str:
    """`\\n\\nHuman: ...\\n\\nAssistant:`: the prompt's turns as HH writes them, then the
    Assistant's turn opened for the response."""
    turns: list[list[str]] = []
    for message in messages_of(prompt):
        speaker = HH_SPEAKERS[message["role"]]
        if turns and turns[-1][0] == speaker:
            turns[-1][1] += "\n\n" + message["content"]
        else:
            turns.append([speaker, message["content"]])
    return "".join(f"\n\n{speaker}: {text}" for speaker, text in turns) + TEXT_PROMPT_END


def hh_transcript(prompt: str | Messages, response: str) -> str:
    """`\\n\\nHuman: ...\\n\\nAssistant: ...`, ending with `response` as its own Assistant turn."""
    return text_prompt(prompt) + TEXT_RESPONSE_START + response


def hh_rlhf_rows(*, project: Project, options: Options) -> Iterator[dict[str, Any]]:
    """Anthropic HH-RLHF's format: `chosen` and `rejected` as whole transcripts."""
    shape = shape_of(project, options)
    for tally in _winners(project, options):
        chosen, rejected = tally.ranked()
        prompt = tally.comparison.prompt.content
        yield {
            "chosen": hh_transcript(prompt, chosen.text),
            "rejected": hh_transcript(prompt, rejected.text),
            **preference_metadata(tally, shape),
        }


def openai_rows(*, project: Project, options: Options) -> Iterator[dict[str, Any]]:
    """OpenAI's preference (DPO) fine-tuning rows, and nothing else: the file uploads as it is.

    The evidence is in `trl`: its rows are the same comparisons, in the same order.
    """
    for tally in _winners(project, options):
        chosen, rejected = tally.ranked()
        yield {
            "input": {"messages": messages_of(tally.comparison.prompt.content)},
            "preferred_output": [assistant(chosen.text)],
            "non_preferred_output": [assistant(rejected.text)],
        }


ARENA_WINNER: dict[str, str] = {Choice.TIE: "tie", Choice.BOTH_BAD: "tie (bothbad)"}


def arena_rows(*, project: Project, options: Options) -> Iterator[dict[str, Any]]:
    """Chatbot Arena's battles: one row per vote, candidate A as model_a, whichever side it was on.

    `tstamp` is the vote's time in Unix seconds, as Arena's; `source` whose vote it was. Rows
    come by comparison, then by judgment id; read as the pairwise formats read: a keyset page
    of comparisons (their texts read once, not once per vote), then that page's votes in one
    query.
    """
    pseudonym = Pseudonyms(project)
    comparisons = judged_pairs(project=project, options=options).order_by("id")
    rows = comparisons.values_list(
        "id",
        "prompt__external_id",
        "prompt__content",
        "candidate_a_id",
        "candidate_a__model",
        "candidate_a__text",
        "candidate_b__model",
        "candidate_b__text",
    )
    # Read at call time: tests shrink the page to split the data.
    for page in keyset_pages(rows, selectors.PAGE):
        # The page's votes; those of comparisons left out above (gold, another batch or
        # project, other models) fall in the same id range and are skipped below.
        votes = Judgment.objects.filter(
            comparison_id__gte=page[0][0],
            comparison_id__lte=page[-1][0],
            invalidated_at__isnull=True,
            source__in=options.sources,
        ).exclude(choice=Choice.RANKING)
        if options.batch_id is not None:
            votes = votes.filter(batch_id=options.batch_id)
        if options.since is not None:
            votes = votes.filter(created_at__gte=options.since)
        if not options.include_ties:
            votes = votes.exclude(choice__in=(Choice.TIE, Choice.BOTH_BAD))
        judgments = list(
            votes.order_by("comparison_id", "id").values_list(
                "comparison_id", "annotator_id", "choice", "chosen_id", "created_at", "source"
            )
        )
        at, end = 0, len(judgments)
        for (
            comparison_id,
            prompt_id,
            prompt,
            candidate_a_id,
            model_a,
            text_a,
            model_b,
            text_b,
        ) in page:
            while at < end and judgments[at][0] < comparison_id:
                at += 1
            first = at
            while at < end and judgments[at][0] == comparison_id:
                at += 1
            if first == at or (
                options.split is not None
                and split_of(project.slug, prompt_id, options.test_fraction) != options.split
            ):
                continue
            messages = messages_of(prompt)
            conversation_a = [*messages, assistant(text_a)]
            conversation_b = [*messages, assistant(text_b)]
            turn = sum(message["role"] == "user" for message in messages)
            for _, annotator_id, choice, chosen_id, created_at, source in judgments[first:at]:
                side = "model_a" if chosen_id == candidate_a_id else "model_b"
                yield {
                    "question_id": prompt_id,
                    "comparison_id": comparison_id,
                    "model_a": model_a,
                    "model_b": model_b,
                    "winner": ARENA_WINNER.get(choice, side),
                    "judge": pseudonym(annotator_id),
                    # FastChat's Elo analysis keeps anonymous battles: our judges never see
                    # the models' names.
                    "anony": True,
                    "turn": turn,
                    "conversation_a": conversation_a,
                    "conversation_b": conversation_b,
                    "tstamp": created_at.timestamp(),
                    # Whose vote: "human" or "ai" (an AI judge's; see `sources`).
                    "source": source,
                }


def _listwise(*, project: Project, options: Options) -> Iterator[dict[str, Any]]:
    shape = shape_of(project, options)
    return listwise_rows(
        project=project,
        options=options,
        prompt=lambda content: prompt_in(content, shape),
    )


def _judgments(*, project: Project, options: Options) -> Iterator[dict[str, Any]]:
    return judgments_rows(project=project, options=options)


ALL_SCHEMES = tuple(Scheme.values)


@dataclass(frozen=True)
class Format:
    rows: Callable[..., Iterator[dict[str, Any]]]
    # The query parameters it takes besides `format` and `batch`.
    parameters: tuple[str, ...] = ()
    # The schemes whose projects can have a row of it (see `formats_for`).
    schemes: tuple[str, ...] = ALL_SCHEMES


# The filters every pairwise format takes.
PAIRWISE = (
    "aggregate",
    "min_votes",
    "min_agreement",
    "models",
    "include_gold",
    "since",
    "criterion",
    "split",
    "test_fraction",
    "sources",
)
# The filters of the one-row-per-vote formats.
PER_VOTE = ("include_ties", "include_gold", "since", "split", "test_fraction", "sources")

FORMATS: dict[str, Format] = {
    "trl": Format(trl_rows, (*PAIRWISE, "prompt_form")),
    "trl-implicit": Format(trl_implicit_rows, (*PAIRWISE, "prompt_form")),
    "kto": Format(kto_rows, ("both_bad", *PAIRWISE, "prompt_form")),
    "hh-rlhf": Format(hh_rlhf_rows, PAIRWISE),
    "openai": Format(openai_rows, PAIRWISE),
    # One row per pairwise vote: a listwise project's votes are rankings.
    "arena": Format(arena_rows, (*PER_VOTE, "models"), (Scheme.PAIRWISE, Scheme.GRADED)),
    # One row per ranked prompt: only a listwise project has rankings.
    "listwise": Format(
        _listwise,
        ("min_votes", "since", "split", "test_fraction", "prompt_form", "sources"),
        (Scheme.LISTWISE,),
    ),
    "judgments": Format(_judgments, PER_VOTE),
}
# format=card counts the pairwise rows under the same aggregation and filters.
CARD_PARAMETERS = PAIRWISE


def formats_for(scheme: str) -> list[str]:
    """The formats that apply to a project of this scheme (in FORMATS' order): those that can
    have a row in it. Every door that offers formats (the admin's links and export form, the
    API's and the command's checks) asks this, so none offers a format whose file would be
    empty."""
    return [name for name, spec in FORMATS.items() if scheme in spec.schemes]


def export_rows(
    *, project: Project, format: str, options: Options | None = None
) -> Iterator[dict[str, Any]]:
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    rows: Iterator[dict[str, Any]] = FORMATS[format].rows(
        project=project, options=options or Options()
    )
    return rows
