from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.batches.models import Batch, BatchStatus, Candidate, Prompt
from apps.endpoints.models import ModelEndpoint
from apps.endpoints.services import endpoint_save
from apps.projects.models import Project
from tests.endpoints.fake_llm import FakeLLM, fake_llm


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with fake_llm(models=("model-x", "model-y")) as server:
        yield server


@pytest.fixture
def endpoint(llm: FakeLLM, bob: User, project: Project) -> Callable[..., ModelEndpoint]:
    """An endpoint of `project` on the fake server, registered by its lead."""

    def make(name: str = "x", model: str = "model-x", **fields: Any) -> ModelEndpoint:
        values: dict[str, Any] = {
            "name": name,
            "project": project,
            "base_url": llm.url,
            "model": model,
            "max_retries": 0,
            "timeout_seconds": 5,
        }
        values.update(fields)
        return endpoint_save(ModelEndpoint(**values), by=bob)

    return make


@pytest.fixture
def prompts_batch(project: Project) -> Callable[..., Batch]:
    """A batch of prompts with no candidates (as an import with candidates optional makes)."""

    def make(*texts: Any, target: Project | None = None, candidates: int = 0) -> Batch:
        batch = Batch.objects.create(
            project=target or project,
            name="prompts",
            status=BatchStatus.ACTIVE,
            candidates_optional=True,
        )
        for i, text in enumerate(texts):
            prompt = Prompt.objects.create(
                project=batch.project, batch=batch, external_id=f"p-{i}", content=text
            )
            for c in range(candidates):
                Candidate.objects.create(
                    prompt=prompt, external_id=f"c{c}", text=f"imported {c}", model="imported"
                )
        batch.prompt_count = len(texts)
        batch.save(update_fields=["prompt_count"])
        return batch

    return make
