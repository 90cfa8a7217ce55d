"""What an export may be asked for besides its format: one object, parsed once.

Every door (the export endpoint's query string, the background job's body, `manage.py export`'s
options, the admin's start form through the job service) builds one `Options` with
`apps.exports.api.export_options`, and every reader (selectors, rankings, formats, the card,
the jobs' row estimate) takes that object whole: a new filter is a field here, its parsing
there, and its use where it filters.
"""

from dataclasses import dataclass, fields
from datetime import datetime

# `prompt_form`: the conversational form (the default) or the text form, for base models.
CONVERSATIONAL, TEXT = "conversational", "text"
PROMPT_FORMS = (CONVERSATIONAL, TEXT)

# `sources`: whose votes an export reads. People's by default (every figure about people reads
# theirs only); `ai` is an RLAIF dataset of the AI judges' votes alone; `all` both.
SOURCES: dict[str, tuple[str, ...]] = {
    "human": ("human",),
    "ai": ("ai",),
    "all": ("human", "ai"),
}


@dataclass(frozen=True)
class Options:
    """What an export may be asked for besides its format."""

    batch_id: int | None = None
    # kto: both candidates of a both-bad majority become false rows.
    both_bad: bool = False
    # arena and judgments: keep the votes for a tie and for both bad.
    include_ties: bool = True
    # The pairwise formats: only comparisons with at least this many votes, and whose majority
    # option holds at least this share of them.
    min_votes: int = 1
    min_agreement: float = 0.0
    # Only the prompts of one half, "train" or "test" (by prompt).
    split: str | None = None
    test_fraction: float = 0.1
    # The pairwise formats: how votes become a winner (selectors.AGGREGATES).
    aggregate: str = "majority"
    # The pairwise formats and arena: only comparisons whose two candidates' models are here.
    models: tuple[str, ...] | None = None
    # Gold comparisons are left out unless asked for.
    include_gold: bool = False
    # Pairwise formats: comparisons with a vote at or after it; arena, judgments: such votes.
    since: datetime | None = None
    # The pairwise formats: one criterion's answers instead of the overall choice.
    criterion: str | None = None
    # trl, trl-implicit, kto, listwise: prompts and responses as messages (CONVERSATIONAL) or
    # as text (TEXT); see `formats.text_prompt`.
    prompt_form: str = CONVERSATIONAL
    # Whose votes: Judgment.source values (SOURCES' values; people's by default).
    sources: tuple[str, ...] = ("human",)

    @property
    def human_only(self) -> bool:
        """Only people's votes: the default, under which the comparisons' counters can stand
        for the votes read (AI votes do not touch them unless their judge counts toward the
        overlap)."""
        return self.sources == ("human",)


def _parameter(field: str) -> str:
    return "batch" if field == "batch_id" else field


# Each option's parameter name, as the query string, a job's body and (with dashes) the command
# spell it: `batch` for `batch_id`, every other one its field's name.
PARAMETERS: tuple[str, ...] = tuple(_parameter(field.name) for field in fields(Options))
