"""What the queue's services return: typed, frozen results."""

from dataclasses import dataclass

from apps.judging.models import Assignment, Judgment, Skip
from apps.projects.models import Membership


@dataclass(frozen=True)
class Preference:
    """A prefetched comparison, and whether it was shown with candidate B on the left."""

    comparison_id: int
    swap: bool

    def __str__(self) -> str:
        return f"{self.comparison_id}:{int(self.swap)}"

    @classmethod
    def parse(cls, value: str) -> "Preference | None":
        """From the page's `prefer` field; None for anything else (it is only a hint)."""
        comparison, _, swap = value.partition(":")
        if not comparison.isdigit() or swap not in ("0", "1") or len(comparison) > 18:
            return None
        return cls(int(comparison), swap == "1")


@dataclass(frozen=True)
class SubmitResult:
    """A judgment taken (or found again), with what its response shows besides the judgment."""

    judgment: Judgment
    created: bool  # False when this was a retry of an earlier, identical submission
    chosen_external_id: str | None  # the winner's imported id; None for tie, both bad, ranking
    left_is_a: bool  # whether candidate A was shown on the left (answers.on_screen)
    # The project's consistency-probe rate where the submit read it anyway (annotate_submit);
    # None where it did not (the caller then has the project, or asks).
    repeat_rate: float | None = None
    # The annotator's membership with its project as the judgment left them, where the submit
    # was asked for it and read it anyway (annotate_submit); None where not.
    membership: Membership | None = None


# Why a submit or skip that asked for the next assignment (`?next=1`) carries none.
NEXT_NONE_LEFT = "none_left"  # what next answers with 204
NEXT_BLOCKED = "blocked"  # what next answers with 403: a cap, the gold rule, removed
NEXT_UNAVAILABLE = "unavailable"  # taking the lease failed; the judgment or skip stands
NEXT_REASONS = (NEXT_NONE_LEFT, NEXT_BLOCKED, NEXT_UNAVAILABLE)


@dataclass(frozen=True)
class NextAfter:
    """The next assignment a submit or skip asked for: `assignment`, or None and why
    (`reason`, one of NEXT_REASONS, and `detail`, a sentence for a person)."""

    assignment: Assignment | None
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True)
class SkipResult:
    skip: Skip
    created: bool


@dataclass(frozen=True)
class UndoResult:
    assignment: Assignment  # the annotator's lease on the comparison again, sides as before
    undone: Judgment  # what they had answered (no longer stored)
    left_is_a: bool  # whether candidate A was shown on the left of the undone judgment


@dataclass(frozen=True)
class InvalidationResult:
    judgments: int  # judgments marked invalid now
    comparisons: int  # comparisons whose counts moved back
    reopened: int  # of those, comparisons that were complete and take votes again


@dataclass(frozen=True)
class Peek:
    """What the annotator would most likely be given next (comparison_peek): an unsaved lease
    (no id), and the preference the page sends back to ask for it."""

    assignment: Assignment
    preference: Preference
