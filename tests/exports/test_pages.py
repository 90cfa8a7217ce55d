"""Exports read the database a page at a time (by id); where the pages end changes nothing.

The project is `test_export_formats`'s tiny one, with its gold item imported second, so that its
votes fall between two exported comparisons' (in the range a pairwise page reads, and skipped).
"""

import pytest

from apps.batches.models import Comparison
from apps.exports import selectors
from apps.exports.formats import FORMATS
from tests.conftest import prompt_line
from tests.exports.test_exports import URL
from tests.exports.test_formats import CONV, VOTES, vote_all


@pytest.fixture
def gold_inside(project, annotators, import_rows) -> None:
    import_rows(
        prompt_line("s-win"),
        prompt_line("gold"),
        prompt_line("conv", prompt=CONV),
        prompt_line("s-tie"),
        prompt_line("s-bad"),
    )
    vote_all(project, annotators, lambda index, c: VOTES[c.prompt.external_id][index])
    Comparison.objects.filter(prompt__external_id="gold").update(is_gold=True, gold_answer="a")


def body(api, bob, format: str, **params: str) -> bytes:
    response = api(bob).get(URL, {"format": format, **params})
    assert response.status_code == 200
    return b"".join(response.streaming_content)


@pytest.mark.parametrize("page", [1, 2])
# listwise is a 400 in this pairwise project, which has no rankings.
@pytest.mark.parametrize("format", [f for f in FORMATS if f != "listwise"])
def test_an_export_read_in_small_pages_is_the_export_read_at_once(
    api, bob, gold_inside, monkeypatch, format, page
):
    whole = body(api, bob, format)
    monkeypatch.setattr(selectors, "PAGE", page)
    monkeypatch.setattr(selectors, "JUDGMENTS_PAGE", page)
    assert body(api, bob, format) == whole


def test_the_pages_see_every_exported_row(api, bob, gold_inside, monkeypatch):
    """Not vacuous: the pairwise formats have their two pairs, the judgments all 12 votes."""
    monkeypatch.setattr(selectors, "PAGE", 1)
    monkeypatch.setattr(selectors, "JUDGMENTS_PAGE", 2)
    assert body(api, bob, "trl").count(b"\n") == 2
    assert body(api, bob, "kto").count(b"\n") == 4
    assert body(api, bob, "judgments").count(b"\n") == 12
    assert body(api, bob, "arena").count(b"\n") == 12


@pytest.mark.parametrize("page", [1, 2])
@pytest.mark.parametrize(
    "params",
    [
        {"include_ties": "false"},
        {"include_gold": "true"},
        {"include_gold": "true", "include_ties": "false", "models": "model-1,model-2"},
        {"split": "train", "test_fraction": "0.5"},
        {"split": "test", "test_fraction": "0.5"},
        {"since": "2000-01-01T00:00:00+00:00"},
    ],
)
def test_arena_read_in_small_pages_is_arena_read_at_once(
    api, bob, gold_inside, monkeypatch, params, page
):
    """arena's pages are of comparisons (the gold one, read or skipped, among them); each
    filter gives the same bytes whatever the page size."""
    whole = body(api, bob, "arena", **params)
    assert whole
    monkeypatch.setattr(selectors, "PAGE", page)
    assert body(api, bob, "arena", **params) == whole
