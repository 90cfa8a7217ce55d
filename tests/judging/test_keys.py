"""The judging page's keys come from one table (apps/judging/keys.py): buttons, help and script."""

import json
import re
from html import unescape

import pytest

from apps.judging.keys import keymap
from apps.projects.models import Scheme


@pytest.fixture
def ann_client(client, annotators):
    client.force_login(annotators[0])
    return client


def script_keys(html: str) -> dict:
    match = re.search(r'<div id="judging-keys" hidden data-keys="([^"]*)"></div>', html)
    assert match, "no key table on the page"
    return json.loads(unescape(match.group(1)))


def test_the_page_hands_its_keys_to_the_scripts_as_data(ann_client, batch):
    html = ann_client.get("/p/demo/").content.decode()
    assert "<script>" not in html and 'type="application/json"' not in html  # no inline script
    table = script_keys(html)
    assert table["judge"]["1"] == table["judge"]["ArrowLeft"] == ["choice", "left"]
    assert table["judge"]["4"] == ["choice", "both_bad"]
    assert table["page"]["u"] == "undo" and table["page"]["?"] == "help"
    # The buttons and the help list say the same keys.
    assert 'data-choice="left" aria-keyshortcuts="1">Left is better <kbd>1 or ←</kbd>' in html
    assert "<tr><td><kbd>1 or ←</kbd></td><td>Left is better</td></tr>" in html


def test_only_the_projects_choices_have_keys(ann_client, project, batch):
    project.allow_tie = project.allow_both_bad = False
    project.save()
    table = script_keys(ann_client.get("/p/demo/").content.decode())
    assert set(table["judge"]) == {"1", "ArrowLeft", "2", "ArrowRight"}


def test_graded_keys_run_from_left_to_right_and_b_for_both_bad(project):
    project.scheme = Scheme.GRADED
    keys = keymap(project, skip_reasons=False)
    assert [(g.shortcut, g.value) for g in keys.grades][:2] == [("1", "-3"), ("2", "-2")]
    assert keys.script_data()["judge"]["7"] == ["strength", "3"]
    assert keys.script_data()["judge"]["b"] == ["choice", "both_bad"]
    assert keys.choices == []


def test_listwise_judges_by_places_not_by_keys(project):
    project.scheme = Scheme.LISTWISE
    keys = keymap(project, skip_reasons=True)
    assert keys.script_data()["judge"] == {}
    assert any("Submit the ranking" in action for _, action in keys.help)
