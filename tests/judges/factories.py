"""AI judges and their judgments, made with the ORM as the judge runner (apps.judges.services)
records them: an account of role "ai", a Judge, and per comparison a submitted Assignment, a
Judgment of source "ai" by that account and a Verdict linking them, without touching the
comparison's counters (a judge that does not count toward the overlap, the default). An
inconsistent verdict under the "inconsistent" policy has no judgment: no vote."""

from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from apps.batches.models import Comparison
from apps.endpoints.models import ModelEndpoint
from apps.judges.models import Judge, Verdict
from apps.judging.models import Assignment, AssignmentStatus, Judgment, Source
from apps.projects.models import Membership, Project, Role


def make_judge(project: Project, name: str = "judge-1", **fields: Any) -> Judge:
    """A judge of the project with its own endpoint and an account of role "ai"."""
    account = User.objects.create_user(f"ai-{project.slug}-{name}")
    account.set_unusable_password()
    account.save()
    Membership.objects.create(project=project, user=account, role=Role.AI)
    endpoint = ModelEndpoint.objects.create(
        project=project, name=f"{name} endpoint", base_url="http://judge:8000/v1", model="judge"
    )
    fields.setdefault("template_version", "v1")
    return Judge.objects.create(
        project=project, name=name, endpoint=endpoint, account=account, **fields
    )


def ai_vote(
    judge: Judge,
    comparison: Comparison,
    option: str | None,
    *,
    consistent: bool | None = True,
    strength: int | None = None,
    criteria: dict[str, Any] | None = None,
    template_version: str | None = None,
    ranking: list[list[int]] | None = None,
) -> Verdict:
    """The judge's verdict on a comparison: `option` "a", "b", "tie" or "both_bad" records a
    judgment (candidate A shown on the left, as the first order shows it); None records no
    vote (the orders disagreed under the "inconsistent" policy, or the reply failed). A
    listwise comparison takes option "ranking" and `ranking`, groups of candidate ids."""
    now = timezone.now()
    judgment = None
    if option is not None:
        assignment = Assignment.objects.create(
            project=comparison.project,
            comparison=comparison,
            annotator=judge.account,
            left=comparison.candidate_a,
            right=comparison.candidate_b,
            status=AssignmentStatus.SUBMITTED,
            created_at=now,
            expires_at=now,
            closed_at=now,
            shown_order=comparison.candidate_ids,
        )
        chosen = {"a": comparison.candidate_a, "b": comparison.candidate_b}.get(option)
        choice = {"a": "left", "b": "right"}.get(option, option)
        judgment = Judgment.objects.create(
            comparison=comparison,
            batch=comparison.batch,
            annotator=judge.account,
            assignment=assignment,
            choice=choice,
            source=Source.AI,
            left=comparison.candidate_a,
            right=comparison.candidate_b,
            chosen=chosen,
            strength=strength,
            criteria=criteria or {},
            ranking=ranking,
            created_at=now,
        )
    outcome = None if option is None else {"option": option, "strength": strength}
    return Verdict.objects.create(
        judge=judge,
        comparison=comparison,
        judgment=judgment,
        template_version=template_version or judge.template_version,
        first=outcome,
        second=outcome,
        outcome=outcome,
        consistent=consistent,
    )
