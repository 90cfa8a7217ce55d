"""A lead generates responses in a real browser, at 1366x768 and at 768 px: a batch of prompts
imported without candidates, its page's "Generate responses" link, the job's form filled from
the keyboard, and the job's page with its progress, usage and failures (the fake
OpenAI-compatible server on loopback refuses one prompt)."""

import io
import os
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.batches.models import Comparison
from apps.batches.services import batch_import
from apps.endpoints.models import ModelEndpoint
from apps.endpoints.services import endpoint_save
from apps.generation.models import GenerationJob, JobStatus
from apps.projects.models import Project
from tests.conftest import jsonl
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import DOCS, admin_log_in
from tests.endpoints.fake_llm import Fault, fake_llm

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("width", [1366, 768])
def test_a_lead_generates_responses_from_the_batch_page(
    tmp_path: Any,
    live_server: Any,
    make_page: Any,
    page_log: PageLog,
    bob: User,
    project: Project,
    width: int,
) -> None:
    data = jsonl(
        *({"id": f"q{i}", "prompt": f"Question {i}: name a colour."} for i in range(5)),
        {"id": "q-long", "prompt": "This prompt is refused by the server."},
    )
    batch = batch_import(
        project=project,
        source=io.BytesIO(data),
        size=len(data),
        name="prompts only",
        created_by=bob,
        background=False,
        candidates_optional=True,
    )
    with fake_llm(models=("model-x", "model-y")) as llm:
        llm.fail_when(
            "refused", Fault(status=400, body=b'{"error": {"message": "prompt too long"}}')
        )
        for name, model in (("local-x", "model-x"), ("local-y", "model-y")):
            endpoint_save(
                ModelEndpoint(
                    project=project,
                    name=name,
                    base_url=llm.url,
                    model=model,
                    max_retries=0,
                    input_price="0.5",
                    output_price="1.5",
                ),
                by=bob,
            )
        page = make_page(viewport={"width": width, "height": 768})
        page.set_default_navigation_timeout(30_000)
        base = live_server.url
        admin_log_in(page, base, "bob")

        page.goto(f"{base}/admin/batches/batch/{batch.pk}/change/")
        assert "none yet" in page.inner_text(".field-generation")
        with page.expect_navigation():
            page.click(".field-generation a", timeout=10_000)
        # The batch is filled in; the rest from the keyboard.
        assert page.input_value("#id_batch") == str(batch.pk)
        page.focus("#id_endpoints")
        page.keyboard.press("Home")
        page.keyboard.press("Shift+End")
        page.fill("#id_samples", "2")
        page.fill("#id_temperature", "0.8")
        page.fill("#id_seed", "7")
        page.select_option("#id_pairing", "models")
        with page.expect_navigation():
            page.press("#id_seed", "Enter")

        job = GenerationJob.objects.get()
        assert page.url == f"{base}/admin/generation/generationjob/{job.pk}/change/"
        assert job.status == JobStatus.DONE
        panel = page.inner_text("#generation-panel")
        assert "20 of 24 responses, 4 failed" in panel
        assert "6 of 6 prompts settled" in panel and "5 comparisons formed" in panel
        assert f"estimated cost {job.cost:.4f}" in panel
        assert "q-long" in page.inner_text(".field-failures")
        assert "prompt too long" in page.inner_text(".field-failures")
        assert page.locator("button", has_text="Resume job").is_visible()
        # Nothing wider than the window: the page does not scroll sideways.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        target = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path
        name = "admin-generation.png" if width == 1366 else "admin-generation-tablet.png"
        page.screenshot(path=str(target / name), full_page=False)

        page.goto(f"{base}/admin/batches/batch/{batch.pk}/change/")
        assert "20 candidates" in page.inner_text(".field-generation")
    # One pair per pair of models, for each prompt the server answered.
    assert Comparison.objects.filter(batch=batch).count() == 5
    page_log.assert_clean(base)
