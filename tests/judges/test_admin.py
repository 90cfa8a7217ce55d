"""The admin's doors to AI judges: a lead adds a judge (its problems shown by field), starts it
over a batch, reads the job's page and the verdicts, cancels and resumes; others get nothing."""

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.judges.models import Judge, JudgeJob, JudgeJobStatus, Verdict
from apps.projects.models import Project
from tests.conftest import events
from tests.judges.test_judging import good_and_bad, judge_llm, make_judge  # noqa: F401

pytestmark = pytest.mark.django_db


def judge_form(project: Project, endpoint_id: int, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "project": project.pk,
        "name": "judge one",
        "endpoint": endpoint_id,
        "system_prompt": "",
        "user_prompt": "",
        "disagreement": "inconsistent",
        "temperature": "0",
        "max_tokens": "512",
    }
    data.update(changes)
    return data


def test_a_lead_adds_a_judge_and_runs_it_over_a_batch(
    lead: Client,
    project: Project,
    bob: User,
    judge_llm: Any,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    llm, _ = judge_llm
    first = make_judge(project, llm, bob, name="seed")  # registers the endpoint
    page = lead.get("/admin/judges/judge/add/").content.decode()
    assert "MT-Bench" in page and "{verdict_format}" in page
    response = lead.post(
        "/admin/judges/judge/add/",
        judge_form(project, first.endpoint_id, user_prompt="Which is better? {question}"),
    )
    assert response.status_code == 200
    assert "verdict_format" in response.content.decode()  # the required placeholder is named
    response = lead.post("/admin/judges/judge/add/", judge_form(project, first.endpoint_id))
    assert response.status_code == 302, response.content.decode()[:2000]
    judge = Judge.objects.get(name="judge one")
    assert judge.account.username.startswith("ai-demo-judge-one")
    assert events("judge_saved")[-1].actor == bob

    batch = good_and_bad(project, n=2)
    with django_capture_on_commit_callbacks(execute=True):
        response = lead.post("/admin/judges/judgejob/add/", {"judge": judge.pk, "batch": batch.pk})
    assert response.status_code == 302, response.content.decode()[:2000]
    job = JudgeJob.objects.get(judge=judge)
    assert job.status == JudgeJobStatus.DONE
    page = lead.get(response["Location"]).content.decode()
    assert "2 of 2 comparisons judged in both orders" in page and "Resume job" in page
    verdicts = lead.get("/admin/judges/verdict/").content.decode()
    assert verdicts.count("judge one") >= 2
    assert Verdict.objects.filter(judge=judge).count() == 2

    lead.post(f"/admin/judges/judgejob/{job.pk}/resume/")
    job.refresh_from_db()
    assert job.status in (JudgeJobStatus.QUEUED, JudgeJobStatus.DONE)


def test_others_have_no_admin_for_judges(client: Client, annotators: list[User]) -> None:
    client.force_login(annotators[0])
    for url in ("/admin/judges/judge/", "/admin/judges/judgejob/", "/admin/judges/verdict/"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response["Location"]
