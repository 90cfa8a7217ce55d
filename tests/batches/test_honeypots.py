"""Generated gold items (honeypots): the degradations, the draw, both writers, the gold
mechanism they go through, and the doors that refuse them where they cannot work."""

import io
import random
from collections import Counter
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import transaction

from apps.audit.models import AuditAction
from apps.batches import services
from apps.batches.honeypots import (
    SHUFFLE_MIN_SENTENCES,
    HoneypotMaker,
    sentences,
    shuffled,
    truncated,
)
from apps.batches.import_format import ParsedCandidate, ParsedPrompt
from apps.batches.models import Batch, Candidate, Comparison, Degradation
from apps.judging.models import Judgment
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Membership, Project
from apps.projects.services import membership_add, project_create
from tests.conftest import events, jsonl

LONG = (
    "Paris is the capital of France and its largest city by far. It lies on the Seine in the "
    "north of the country. About two million people live in the city itself. The wider region "
    "holds more than twelve million."
)
WORDS = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"


def rich_line(pid: str, n: int = 2) -> dict[str, Any]:
    """A prompt whose responses every degradation applies to."""
    return {
        "id": pid,
        "prompt": f"Tell me about place {pid}.",
        "candidates": [
            {"id": f"c{i}", "text": f"Answer {i} for {pid}. {LONG}", "model": f"model-{i}"}
            for i in range(1, n + 1)
        ],
    }


def parsed(pid: str, *texts: str) -> ParsedPrompt:
    return ParsedPrompt(
        line=1,
        external_id=pid,
        content=f"prompt {pid}",
        metadata={},
        candidates=[
            ParsedCandidate(external_id=f"c{i}", text=t, model="m", params={}, metadata={})
            for i, t in enumerate(texts, 1)
        ],
    )


# -- the degradations, on hand cases -----------------------------------------------------------


def test_truncation_cuts_inside_a_sentence_at_30_to_70_percent_without_final_punctuation():
    for seed in range(50):
        cut = truncated(LONG, random.Random(seed))
        assert cut is not None and cut != LONG
        assert LONG.startswith(cut)
        words = len(cut.split())
        total = len(LONG.split())
        assert 0.3 * total - 1 <= words <= 0.7 * total
        assert cut[-1] not in ".,;:!?"
        # The word it stops in does not end a sentence in the original.
        rest = LONG[len(cut) :]
        assert not rest.startswith((". ", "! ", "? ")), (seed, cut)


def test_truncation_needs_twelve_words_and_a_cut_inside_a_sentence():
    assert truncated("Too short to cut, only a few words here.", random.Random(1)) is None
    assert truncated(WORDS, random.Random(1)) is not None
    every_word_a_sentence = " ".join(f"{w}." for w in WORDS.split())
    assert truncated(every_word_a_sentence, random.Random(1)) is None


def test_shuffling_changes_the_order_and_keeps_every_sentence():
    text = "First this. Then that! Is it so? Surely it is."
    for seed in range(30):
        result = shuffled(text, random.Random(seed))
        assert result is not None and result != text
        assert sorted(sentences(result)) == sorted(sentences(text))


def test_shuffling_needs_three_different_sentences_and_no_code():
    assert SHUFFLE_MIN_SENTENCES == 3
    assert shuffled("One sentence. Two sentences.", random.Random(1)) is None
    assert shuffled("Same. Same. Same.", random.Random(1)) is None
    assert shuffled("Run it. Like so:\n```\nx = 1. y = 2.\n```\nDone.", random.Random(1)) is None
    assert shuffled("A b. C d. E f.", random.Random(1)) is not None


def test_off_topic_takes_another_prompts_response_never_its_own():
    maker = HoneypotMaker(rate=1.0, seed="s")
    short = [parsed(f"p{i}", f"Yes {i}", f"No {i}") for i in range(6)]
    # The first prompt's short answers take no truncation or shuffle, and nothing was read
    # before it: no honeypot.
    assert maker.make(short[0]) is None
    for prompt in short[1:]:
        honeypot = maker.make(prompt)
        assert honeypot is not None and honeypot.kind == Degradation.OFF_TOPIC
        own = {c.text for c in prompt.candidates}
        assert honeypot.candidate.text not in own
        earlier = {c.text for p in short[: short.index(prompt)] for c in p.candidates}
        assert honeypot.candidate.text in earlier


def test_the_kind_falls_back_to_one_that_applies():
    # One long sentence without a stop: no shuffle; the first prompt: no off_topic.
    kinds = Counter()
    for seed in range(40):
        honeypot = HoneypotMaker(rate=1.0, seed=str(seed)).make(parsed("p", WORDS, WORDS + " x"))
        assert honeypot is not None
        kinds[honeypot.kind] += 1
    assert kinds == {Degradation.TRUNCATED: 40}
    # A short answer beside a long one: the long one is degraded.
    honeypot = HoneypotMaker(rate=1.0, seed="x").make(parsed("p", "Yes.", LONG))
    assert honeypot is not None and honeypot.source == 1


def test_the_degraded_response_never_equals_its_source_and_has_a_fresh_id():
    maker = HoneypotMaker(rate=1.0, seed="ids")
    prompts = [parsed(f"p{i}", LONG, f"Other {i}. {LONG}", "Same.") for i in range(60)]
    for prompt in prompts:
        honeypot = maker.make(prompt)
        assert honeypot is not None
        source = prompt.candidates[honeypot.source]
        assert honeypot.candidate.text != source.text
        assert honeypot.candidate.external_id not in {c.external_id for c in prompt.candidates}
        assert "honeypot" not in honeypot.candidate.external_id
        assert honeypot.candidate.metadata == {"honeypot_of": source.external_id}
        assert honeypot.candidate.model == ""
    assert set(maker.made) == set(Degradation.values) and all(maker.made.values())


def test_the_draw_is_the_same_for_the_same_seed():
    prompts = [parsed(f"p{i}", LONG, f"Other {i}. {LONG}") for i in range(40)]

    def draw(seed: str) -> list[Any]:
        maker = HoneypotMaker(rate=0.5, seed=seed)
        return [maker.make(p) for p in prompts]

    assert draw("a") == draw("a")
    assert draw("a") != draw("b")
    drawn = sum(h is not None for h in draw("a"))
    assert 8 <= drawn <= 32


# -- imports -----------------------------------------------------------------------------------


@pytest.fixture
def gold_project(project: Project) -> Project:
    project.gold_rate = 0.5
    project.honeypot_rate = 1.0
    project.save()
    return project


def test_rate_zero_makes_none(project, import_rows):
    batch = import_rows(*(rich_line(f"p{i}") for i in range(10)))
    assert not Candidate.objects.exclude(degradation="").exists()
    assert batch.comparison_count == Comparison.objects.filter(batch=batch).count() == 10


def test_rate_one_makes_one_gold_item_per_eligible_prompt(gold_project, import_rows, settings):
    settings.IMPORT_HONEYPOT_SEED = "fixed"
    batch = import_rows(*(rich_line(f"p{i}", n=3) for i in range(20)))
    batch.refresh_from_db()
    degraded = Candidate.objects.exclude(degradation="").select_related("prompt")
    assert degraded.count() == 20
    assert {c.prompt.external_id for c in degraded} == {f"p{i}" for i in range(20)}
    assert batch.comparison_count == 20 * 3 + 20
    honeypots = Comparison.objects.filter(batch=batch, is_gold=True).select_related(
        "candidate_a", "candidate_b"
    )
    assert honeypots.count() == 20
    sides = Counter()
    for comparison in honeypots:
        a, b = comparison.candidate_a, comparison.candidate_b
        good, bad = (b, a) if a.degradation else (a, b)
        assert bad.degradation and not good.degradation
        assert comparison.gold_answer == ("a" if good == a else "b")
        assert bad.metadata == {"honeypot_of": good.external_id}
        assert bad.model == "" and good.model
        sides[comparison.gold_answer] += 1
    assert sides["a"] and sides["b"]  # the good response is on either side
    finished = events(AuditAction.IMPORT_FINISHED)[-1]
    assert sum(finished.details["honeypots"].values()) == 20


def test_a_prompt_nothing_applies_to_gets_none(gold_project, import_rows):
    row = {
        "id": "p",
        "prompt": "Q?",
        "candidates": [{"id": "a", "text": "Yes."}, {"id": "b", "text": "No."}],
    }
    batch = import_rows(row)
    assert not Comparison.objects.filter(batch=batch, is_gold=True).exists()


def test_a_listwise_project_never_gets_them_even_if_its_row_says_so(project, import_rows):
    Project.objects.filter(pk=project.pk).update(scheme="listwise", honeypot_rate=1.0, gold_rate=1)
    project.refresh_from_db()
    import_rows(*(rich_line(f"p{i}", n=3) for i in range(5)))
    assert not Candidate.objects.exclude(degradation="").exists()
    assert not Comparison.objects.filter(is_gold=True).exists()


@pytest.mark.postgres
def test_copy_and_bulk_writers_store_the_same_rows(gold_project, settings, alice):
    """The same file through PostgreSQL's COPY writer (in two chunks) and the ORM's bulk writer
    (in one): the same candidates, degradations and gold items."""
    settings.IMPORT_HONEYPOT_SEED = "writers"
    twin = project_create(
        slug="twin", name="Twin", created_by=alice, gold_rate=0.5, honeypot_rate=0.7
    )
    Project.objects.filter(pk=gold_project.pk).update(honeypot_rate=0.7)
    gold_project.refresh_from_db()
    data = jsonl(*(rich_line(f"p{i}", n=3) for i in range(40)))
    prompts = list(services._prompts_to_store(io.BytesIO(data)))

    def rows(project: Project) -> tuple[list[Any], list[Any]]:
        candidates = sorted(
            Candidate.objects.filter(prompt__project=project).values_list(
                "prompt__external_id", "external_id", "text", "model", "degradation", "metadata"
            )
        )
        comparisons = sorted(
            Comparison.objects.filter(project=project).values_list(
                "prompt__external_id",
                "candidate_a__external_id",
                "candidate_b__external_id",
                "is_gold",
                "gold_answer",
            )
        )
        return candidates, comparisons

    with transaction.atomic():
        copy_batch = Batch.objects.create(project=gold_project)
        writer = services._CopyWriter(copy_batch, False)
        writer.write(prompts[:17])
        writer.write(prompts[17:])
    with transaction.atomic():
        bulk_batch = Batch.objects.create(project=twin)
        services._BulkWriter(bulk_batch, False).write(prompts)
    copied, bulked = rows(gold_project), rows(twin)
    assert copied == bulked
    assert 10 <= sum(1 for c in copied[0] if c[4]) <= 39


def test_the_import_command_and_the_batch_api_report_them(gold_project, api, bob, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(*(rich_line(f"p{i}") for i in range(4))))
    call_command("import_batch", "demo", str(path))
    assert "(4 of them generated gold items, honeypots)" in capsys.readouterr().out
    batch = Batch.objects.get()
    body = api(bob).get(f"/api/v1/batches/{batch.pk}/").json()
    assert (body["honeypots"], body["comparisons"]) == (4, 8)
    listed = api(bob).get("/api/v1/projects/demo/batches/").json()["results"]
    assert [b["honeypots"] for b in listed] == [4]


def test_the_batch_admin_shows_them(client, bob, gold_project, import_rows):
    batch = import_rows(*(rich_line(f"p{i}") for i in range(3)))
    client.force_login(bob)
    page = client.get(f"/admin/batches/batch/{batch.pk}/change/").content.decode()
    assert "honeypots (generated gold items)" in page.lower()


# -- the gold mechanism ------------------------------------------------------------------------


def test_choosing_the_degraded_response_costs_gold_accuracy_as_hand_made_gold_does(
    project, make_user, import_rows
):
    project.gold_rate = 1.0
    project.honeypot_rate = 1.0
    project.gold_min_accuracy = 0.8
    project.gold_min_answers = 2
    project.save()
    import_rows(*(rich_line(f"p{i}") for i in range(4)))
    fooled, careful = make_user("fooled"), make_user("careful")
    for user in (fooled, careful):
        membership_add(project=project, user=user, role="annotator")

    def judge(user: Any, *, pick_degraded: bool) -> bool:
        lease = assignment_next(project=project, annotator=user)
        assert lease is not None and lease.comparison.is_gold
        comparison = Comparison.objects.select_related("candidate_a").get(pk=lease.comparison_id)
        degraded = (
            comparison.candidate_a_id
            if comparison.candidate_a.degradation
            else comparison.candidate_b_id
        )
        left = lease.left_id == degraded
        choice = "left" if left == pick_degraded else "right"
        judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)
        return bool(Judgment.objects.get(assignment_id=lease.pk).gold_correct)

    assert [judge(fooled, pick_degraded=True) for _ in range(2)] == [False, False]
    assert [judge(careful, pick_degraded=False) for _ in range(2)] == [True, True]
    standing = dict(
        Membership.objects.filter(project=project, user__in=[fooled, careful]).values_list(
            "user__username", "gold_correct"
        )
    )
    assert standing == {"fooled": 0, "careful": 2}
    blocked = Membership.objects.get(project=project, user=fooled).blocked_reason()
    assert blocked and "gold accuracy 0%" in blocked
    assert not Membership.objects.get(project=project, user=careful).blocked_reason()


def test_the_page_shows_the_sources_model_on_the_degraded_side(client, project, import_rows):
    project.gold_rate = 1.0
    project.honeypot_rate = 1.0
    project.show_models = True
    project.save()
    import_rows(rich_line("p0"))
    user = project.memberships.filter(role="annotator").first().user
    client.force_login(user)
    page = client.get("/p/demo/").content.decode()
    assert 'id="left-title"' in page
    assert "model not given" not in page
    assert page.count("· model-") >= 2


# -- the doors ---------------------------------------------------------------------------------


def test_the_model_refuses_them_without_gold_or_in_a_listwise_project(alice):
    with pytest.raises(ValidationError) as info:
        project_create(slug="a", name="A", created_by=alice, honeypot_rate=0.2)
    assert "gold rate above 0" in str(info.value.message_dict["honeypot_rate"])
    with pytest.raises(ValidationError) as info:
        project_create(
            slug="b",
            name="B",
            created_by=alice,
            scheme="listwise",
            gold_rate=0.2,
            honeypot_rate=0.2,
        )
    assert "listwise" in str(info.value.message_dict["honeypot_rate"])
    assert project_create(slug="c", name="C", created_by=alice, gold_rate=0.2, honeypot_rate=0.2)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-0.1, "greater than or equal to 0"),
        (1.5, "less than or equal to 1"),
        ("abc", "valid number"),
        (0.3, "gold rate above 0"),
    ],
)
def test_the_api_refuses_bad_rates(api, alice, value, message):
    response = api(alice).post(
        "/api/v1/projects/", {"slug": "new", "name": "New", "honeypot_rate": value}, format="json"
    )
    assert response.status_code == 400
    assert message in " ".join(response.json()["honeypot_rate"])
    assert not Project.objects.filter(slug="new").exists()


def test_the_api_takes_a_rate_with_gold(api, alice):
    response = api(alice).post(
        "/api/v1/projects/",
        {"slug": "new", "name": "New", "gold_rate": 0.1, "honeypot_rate": 0.3},
        format="json",
    )
    assert response.status_code == 201 and response.json()["honeypot_rate"] == 0.3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"honeypot_rate": "0.5"}, "gold rate above 0"),
        ({"honeypot_rate": "0.5", "gold_rate": "0.2", "scheme": "listwise"}, "listwise"),
        ({"honeypot_rate": "-0.1", "gold_rate": "0.2"}, "greater than or equal to 0"),
        ({"honeypot_rate": "1.5", "gold_rate": "0.2"}, "less than or equal to 1"),
        ({"honeypot_rate": "abc", "gold_rate": "0.2"}, "Enter a number"),
    ],
)
def test_the_admin_refuses_bad_rates(client, bob, project, changes, message):
    from tests.projects.test_admin import _project_form

    project.memberships.exclude(user=bob).delete()
    client.force_login(bob)
    url = f"/admin/projects/project/{project.pk}/change/"
    response = client.post(url, _project_form(project, **changes))
    assert response.status_code == 200
    assert message in response.content.decode()
    project.refresh_from_db()
    assert (project.honeypot_rate, project.scheme) == (0.0, "pairwise")


def test_the_admin_takes_a_rate_with_gold(client, bob, project):
    from tests.projects.test_admin import _project_form

    project.memberships.exclude(user=bob).delete()
    client.force_login(bob)
    url = f"/admin/projects/project/{project.pk}/change/"
    response = client.post(url, _project_form(project, gold_rate="0.2", honeypot_rate="0.5"))
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.honeypot_rate == 0.5
