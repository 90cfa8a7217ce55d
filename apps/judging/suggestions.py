"""An AI judge's verdict shown to people, only where the project turns it on
(Project.show_ai_suggestion): the newest valid AI judgment of the comparison, on the screen's
terms of the person's lease. Every judgment records whether it could have been shown."""

from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef

from apps.judging.answers import on_screen
from apps.judging.models import Assignment, Choice, Judgment, Source

LABELS = {
    Choice.LEFT.value: "the left response is better",
    Choice.RIGHT.value: "the right response is better",
    Choice.TIE.value: "a tie",
    Choice.BOTH_BAD.value: "both are bad",
}


@dataclass(frozen=True)
class Suggestion:
    judge: str
    label: str


def _ai_judgments(comparison_id: Any) -> Any:
    return Judgment.objects.filter(
        comparison_id=comparison_id, source=Source.AI, invalidated_at__isnull=True
    )


def suggestion_for(lease: Assignment | None) -> Suggestion | None:
    """The AI's verdict on the lease's comparison, on its screen, or None (1 query)."""
    if lease is None or not lease.project.show_ai_suggestion:
        return None
    ai = (
        _ai_judgments(lease.comparison_id)
        .select_related("annotator", "comparison")
        .order_by("-created_at", "-pk")
        .first()
    )
    if ai is None:
        return None
    stored = {
        "option": {
            Choice.LEFT.value: "a" if ai.left_id == ai.comparison.candidate_a_id else "b",
            Choice.RIGHT.value: "b" if ai.left_id == ai.comparison.candidate_a_id else "a",
        }.get(ai.choice, ai.choice),
        "strength": ai.strength,
    }
    shown = on_screen(stored, left_is_a=lease.left_id == ai.comparison.candidate_a_id)
    label = LABELS.get(str(shown["choice"]), str(shown["choice"]))
    if shown["strength"]:
        side = "left" if shown["strength"] < 0 else "right"
        label = f"the {side} response is better, by {abs(shown['strength'])} of 3"
    return Suggestion(judge=ai.annotator.first_name or ai.annotator.username, label=label)


def suggestion_shown(judgment_id: int, lease_id: int) -> None:
    """Records on a person's judgment whether its page could show an AI verdict: the project
    showed suggestions, and an AI judgment of the comparison was there before the lease."""
    lease = Assignment.objects.select_related("project").get(pk=lease_id)
    if not lease.project.show_ai_suggestion:
        return
    earlier = _ai_judgments(OuterRef("comparison_id")).filter(created_at__lte=lease.created_at)
    Judgment.objects.filter(pk=judgment_id, source=Source.HUMAN).filter(Exists(earlier)).update(
        ai_suggestion_shown=True
    )
