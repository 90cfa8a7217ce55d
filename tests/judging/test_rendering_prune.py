"""The stored renderings are a cache: `renderings_prune` (the beat job `prune-renderings`, and
`manage.py prune_renderings`) deletes those older than RENDERINGS_MAX_AGE_DAYS, and a text
still shown is rendered again."""

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from annotate.celery import app as celery_app
from apps.judging.models import Rendering
from apps.judging.rendering import renderings_prune, text_digest
from apps.judging.tasks import renderings_prune_task
from tests.conftest import prompt_line


def age(digests: list[str], days: float) -> None:
    """Makes these rows look stored `days` days ago."""
    Rendering.objects.filter(digest__in=digests).update(
        created_at=timezone.now() - timedelta(days=days)
    )


def rows(n: int, prefix: str) -> list[str]:
    made = [Rendering(digest=f"{prefix}-{i:04d}", html=f"<p>{prefix} {i}</p>") for i in range(n)]
    Rendering.objects.bulk_create(made)
    return [row.digest for row in made]


def test_the_beat_prunes_once_a_day_with_a_registered_task():
    entry = django_settings.CELERY_BEAT_SCHEDULE["prune-renderings"]
    assert entry["task"] == "apps.judging.tasks.renderings_prune_task"
    assert entry["task"] in celery_app.tasks
    assert entry["schedule"] == 86400.0
    assert django_settings.RENDERINGS_MAX_AGE_DAYS == 30


@pytest.mark.django_db
def test_only_the_rows_older_than_the_age_go_a_chunk_at_a_time():
    old, recent, fresh = rows(7, "old"), rows(3, "recent"), rows(2, "fresh")
    age(old, 40)
    age(recent, 20)
    pruned = renderings_prune(older_than=timedelta(days=30), chunk=2)
    assert pruned.deleted == 7 and pruned.left == 5
    assert sorted(Rendering.objects.values_list("digest", flat=True)) == sorted(recent + fresh)
    assert abs(pruned.cutoff - (timezone.now() - timedelta(days=30))) < timedelta(minutes=1)
    again = renderings_prune(older_than=timedelta(days=30))
    assert again.deleted == 0 and again.left == 5
    assert renderings_prune(older_than=timedelta(0)).deleted == 5
    assert not Rendering.objects.exists()


@pytest.mark.django_db
def test_a_negative_age_or_an_empty_chunk_is_refused_and_nothing_goes():
    rows(2, "kept")
    with pytest.raises(ValueError, match="negative"):
        renderings_prune(older_than=timedelta(days=-1))
    with pytest.raises(ValueError, match="chunk"):
        renderings_prune(older_than=timedelta(0), chunk=0)
    assert Rendering.objects.count() == 2


def test_a_text_still_shown_after_its_rendering_went_is_rendered_again(
    client, annotators, import_rows
):
    import_rows(prompt_line("a"))
    digests = [text_digest(t) for t in ("Answer 1 to a", "Answer 2 to a", "What is 2 + 2?")]
    assert Rendering.objects.filter(digest__in=digests).count() == 3
    age(list(Rendering.objects.values_list("digest", flat=True)), 31)
    assert renderings_prune(older_than=timedelta(days=30)).left == 0
    client.force_login(annotators[0])
    html = client.get("/p/demo/").content.decode()
    assert "Answer 1 to a" in html and "Answer 2 to a" in html and "What is 2 + 2?" in html
    stored = Rendering.objects.filter(digest__in=digests)
    assert stored.count() == 3  # stored anew, and dated now: the next prune leaves them
    assert all(timezone.now() - row.created_at < timedelta(minutes=5) for row in stored)


@pytest.mark.django_db
def test_the_task_reads_the_setting_and_does_nothing_at_zero(settings):
    age(rows(4, "old"), 10)
    settings.RENDERINGS_MAX_AGE_DAYS = 0
    assert renderings_prune_task() == 0
    assert Rendering.objects.count() == 4
    settings.RENDERINGS_MAX_AGE_DAYS = 30
    assert renderings_prune_task() == 0
    settings.RENDERINGS_MAX_AGE_DAYS = 7
    assert renderings_prune_task.delay().get() == 4  # through Celery (eager in tests)
    assert not Rendering.objects.exists()


@pytest.mark.django_db
def test_the_command_says_what_it_did(settings):
    age(rows(3, "old"), 45)
    age(rows(2, "mid"), 10)
    out = StringIO()
    call_command("prune_renderings", stdout=out)  # RENDERINGS_MAX_AGE_DAYS, 30
    assert out.getvalue().startswith("Deleted 3 renderings stored before ")
    assert "; 2 left." in out.getvalue()
    out = StringIO()
    call_command("prune_renderings", "--older-than-days", "0", stdout=out)
    assert out.getvalue().startswith("Deleted 2 renderings") and "; 0 left." in out.getvalue()


@pytest.mark.django_db
def test_the_command_refuses_a_negative_age_and_an_age_it_was_not_given(settings):
    rows(2, "kept")
    with pytest.raises(CommandError, match="0 or more"):
        call_command("prune_renderings", "--older-than-days", "-1")
    settings.RENDERINGS_MAX_AGE_DAYS = 0
    with pytest.raises(CommandError, match="--older-than-days"):
        call_command("prune_renderings")
    assert Rendering.objects.count() == 2
