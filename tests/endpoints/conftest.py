from collections.abc import Iterator

import pytest

from tests.endpoints.fake_llm import FakeLLM, fake_llm


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with fake_llm() as server:
        yield server
