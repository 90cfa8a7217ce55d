"""The OpenAPI schema (/api/schema/) tells the truth: schemathesis reads it from a running app,
generates requests from it, valid and invalid, sends them as a lead, and checks every answer.

Bounded and repeatable: a fixed seed, a fixed number of examples an operation, one worker. The
checks: no 5xx; every status code, content type, header and body as the schema declares; a
request the schema forbids is refused (`page_size=null`, a negative id, a string for a number).
Not checked: that every request the schema allows succeeds, since the API also refuses values by
rules the schema cannot state (a batch of another project, a parameter the chosen format does
not take, an unknown username): those are 400s naming the parameter, as declared.
"""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from apps.endpoints.models import ModelEndpoint
from apps.endpoints.services import endpoint_save
from apps.exports.jobs import export_job_request
from apps.generation.models import GenerationJob
from apps.judges.models import Judge, JudgeJob
from apps.judges.services import judge_save
from apps.judging.queue import assignment_next
from apps.projects.selectors import membership_for

# Examples an operation (fuzzing), besides the coverage phase's: two to three minutes.
MAX_EXAMPLES = 10
SEED = 11
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
)
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_api_answers_as_its_schema_says(
    live_server: Any, settings: Any, tmp_path: Path, bob, project, batch
) -> None:
    settings.API_TOKEN_RATE = ""  # thousands of requests in a minute: no throttling here
    # Requests on bob's project, its batch, a real export job and his lease get past the 404s.
    job = export_job_request(project=project, user=bob, data={"format": "trl"})
    lease = assignment_next(
        project=project, annotator=bob, membership=membership_for(user=bob, slug=project.slug)
    )
    assert lease is not None
    # A generation job of the batch, done, on an endpoint nothing answers (a resume fails fast).
    endpoint = endpoint_save(
        ModelEndpoint(
            project=project,
            name="nowhere",
            base_url="http://127.0.0.1:9/v1",
            model="m",
            max_retries=0,
            timeout_seconds=1,
        ),
        by=bob,
    )
    generation = GenerationJob.objects.create(batch=batch, status="done")
    generation.endpoints.set([endpoint])
    judge = judge_save(Judge(project=project, name="nowhere judge", endpoint=endpoint), by=bob)
    judging = JudgeJob.objects.create(judge=judge, batch=batch, status="done")
    token, _ = Token.objects.get_or_create(user=bob)
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "\n".join(
            [
                f"seed = {SEED}",
                "[headers]",
                f"Authorization = {json.dumps(f'Token {token.key}')}",
                "[parameters]",
                f'"path.slug" = {json.dumps(project.slug)}',
                f'"path.job_id" = {job.pk}',
                f'"path.batch_id" = {batch.pk}',
                f'"path.generation_id" = {generation.pk}',
                f'"path.judging_id" = {judging.pk}',
                f'"path.assignment_id" = {lease.pk}',
                "",
            ]
        )
    )
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(config),
            "run",
            f"{live_server.url}/api/schema/",
            "--checks",
            CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--generation-database",
            "none",
            "--workers",
            "1",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=tmp_path,  # its cache (.schemathesis/) stays out of the checkout
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    (tmp_path / "schemathesis.out").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    # Every operation was tested, and every generated request passed every check.
    assert re.search(r"Tested: (\d+)\n", run.stdout) and "Tested: 0\n" not in run.stdout
    assert re.search(r"(\d+) generated, \1 passed", run.stdout), run.stdout[-5000:]
