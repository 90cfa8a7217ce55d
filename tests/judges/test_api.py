"""The REST door to AI judging jobs: by the judge's name, the same rules as the admin's."""

from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.judges.models import JudgeJob, JudgeJobStatus
from apps.judges.services import judging_start
from apps.projects.models import Project
from tests.conftest import api_client_for
from tests.judges.test_judging import good_and_bad, judge_llm, make_judge  # noqa: F401

pytestmark = pytest.mark.django_db


def test_a_lead_judges_a_batch_over_the_api(
    project: Project,
    bob: User,
    charlie: User,
    annotators: list[User],
    judge_llm: Any,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    llm, _ = judge_llm
    make_judge(project, llm, bob)
    batch = good_and_bad(project, n=2)
    api = api_client_for(bob)
    url = f"/api/v1/batches/{batch.pk}/judgings/"
    unknown = api.post(url, {"judge": "nobody"}, format="json")
    assert unknown.status_code == 400 and "judge" in unknown.json()
    with django_capture_on_commit_callbacks(execute=True):
        started = api.post(url, {"judge": "gpt judge"}, format="json")
    assert started.status_code == 202, started.content
    detail = api.get(f"/api/v1/judgings/{started.json()['id']}/").json()
    assert detail["status"] == "done" and detail["comparisons_done"] == 2
    assert len(detail["template_version"]) == 12
    assert [job["id"] for job in api.get(url).json()] == [detail["id"]]
    assert api.post(f"/api/v1/judgings/{detail['id']}/cancel/").status_code == 409
    for outsider in (charlie, annotators[0]):
        other = api_client_for(outsider)
        assert other.get(f"/api/v1/judgings/{detail['id']}/").status_code == 404
        assert other.post(url, {"judge": "gpt judge"}, format="json").status_code == 404
    assert JudgeJob.objects.get().status == JudgeJobStatus.DONE


def test_the_judgment_list_reads_people_s_judgments_unless_asked(
    project: Project,
    bob: User,
    judge_llm: Any,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    llm, _ = judge_llm
    judge = make_judge(project, llm, bob)
    batch = good_and_bad(project, n=2)
    with django_capture_on_commit_callbacks(execute=True):
        judging_start(judge=judge, batch=batch, by=bob)
    api = api_client_for(bob)
    url = f"/api/v1/projects/{project.slug}/judgments/"
    assert api.get(url).json()["results"] == []
    ai = api.get(url + "?sources=ai").json()["results"]
    assert len(ai) == 2 and {row["source"] for row in ai} == {"ai"}
    assert len(api.get(url + "?sources=all").json()["results"]) == 2
    for bad_value in ("robots", ""):
        bad = api.get(url + f"?sources={bad_value}")
        assert bad.status_code == 400 and "sources" in bad.json()
