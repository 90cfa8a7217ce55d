"""The dataset card (format=card): Markdown that says what the data holds and how far to trust
it, with the statistics endpoint's figures."""

import pytest
from django.core.management import call_command

from apps.batches.models import Candidate
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Membership
from tests.conftest import prompt_line

URL = "/api/v1/projects/demo/export/"


@pytest.fixture
def judged(project, annotators, import_rows):
    import_rows(*(prompt_line(f"p{i}", n=3) for i in range(3)))
    choices = {0: "left", 1: "left", 2: "tie"}
    for index, user in enumerate(annotators):
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            judgment_submit(assignment_id=lease.pk, annotator=user, choice=choices[index])
    return project


def card(api, user, **params):
    response = api(user).get(URL, {"format": "card", **params})
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    return response.content.decode()


def test_the_card_carries_the_counts_agreement_models_and_annotators(api, bob, judged):
    text = card(api, bob)
    stats = api(bob).get("/api/v1/projects/demo/stats/").json()
    assert text.startswith("# Demo: preference data\n")
    assert f"| judgments | {stats['counts']['judgments']} |" in text
    with_ties = stats["agreement"]["pairwise"]["with_ties"]["agreement"]
    assert f"{with_ties:.1%}" in text
    assert "InstructGPT 72.6%" in text and "HH-RLHF about 63%" in text
    assert "Aggregation: **majority**" in text
    for model in stats["models"]["bradley_terry"]["models"]:
        assert f"| {model['model']} | {model['score']:.1f} |" in text
    for pseudonym in Membership.objects.filter(role="annotator").values_list(
        "pseudonym", flat=True
    ):
        assert f"| {pseudonym} |" in text
    assert "ann |" not in text and "ben |" not in text  # never a username
    assert "Reliability-weighted (crowd model" in text
    for model in stats["models"]["crowd_leaderboard"]["models"]:
        assert f"{model['model']} {model['score']:.1f} (" in text
    for entry in stats["annotators"]:
        low, high = entry["model_reliability"]["ci95"]
        assert f"{entry['model_reliability']['estimate']:.0%} ({low:.0%} to {high:.0%})" in text


def test_the_card_says_when_agreement_is_not_meaningful(api, bob, judged):
    assert "not meaningful" not in card(api, bob)
    judged.policy = "uncertain_first"
    judged.save(update_fields=["policy"])
    assert "Agreement with the others is not meaningful: under the uncertain_first policy" in (
        card(api, bob)
    )


def test_the_card_is_deterministic_and_follows_the_batch_filter(api, bob, judged, import_rows):
    assert card(api, bob) == card(api, bob)
    other = import_rows(prompt_line("later"))
    text = card(api, bob, batch=other.pk)
    assert f"batch {other.pk}" in text
    assert "| judgments | 0 |" in text


def test_lead_chosen_names_cannot_break_the_tables(api, bob, judged):
    Candidate.objects.filter(external_id="c1").update(model="evil|model\nnext")
    text = card(api, bob)
    assert "evil\\|model next" in text


def test_the_card_refuses_other_parameters_and_strangers(api, bob, annotators, charlie, judged):
    response = api(bob).get(URL, {"format": "card", "both_bad": "include"})
    assert response.status_code == 400 and "both_bad" in response.json()
    assert api(bob).get(URL, {"format": "card", "batch": "x"}).status_code == 400
    assert api(annotators[0]).get(URL, {"format": "card"}).status_code == 404
    assert api(charlie).get(URL, {"format": "card"}).status_code == 404


def test_the_command_writes_the_same_card(api, bob, judged, tmp_path):
    target = tmp_path / "card.md"
    call_command("export", "demo", "--format", "card", "-o", str(target))
    assert target.read_text() == card(api, bob)


HOSTILE = "[x](javascript:alert(1)) <script>alert(2)</script> # heading | table | *em* `code` &amp;"


def rendered(text):
    """The card as a CommonMark renderer with GitHub's tables shows it (markdown-it-py)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table").enable("strikethrough")
    return md.parse(text), md.render(text)


def test_lead_chosen_names_show_as_literal_text_not_markdown(api, bob, judged):
    """The project's name, a model's name and a criterion are the lead's to choose: in the card
    they are text, never a link, a heading, HTML, emphasis or code, and the tables keep their
    columns."""
    judged.name = HOSTILE
    judged.save(update_fields=["name"])
    Candidate.objects.filter(external_id="c1").update(model=HOSTILE)
    text = card(api, bob, models=f"{HOSTILE},model-2")
    tokens, html = rendered(text)
    kinds = {token.type for token in tokens}
    inline_kinds = {child.type for token in tokens for child in token.children or []}
    assert not {"html_block"} & kinds, html
    assert not {"link_open", "html_inline", "em_open"} & inline_kinds, html
    codes = {c.content for t in tokens for c in t.children or [] if c.type == "code_inline"}
    assert "code" not in codes, html
    assert "<script>" not in html and "javascript:" not in html.replace("javascript:alert", "")
    headings = [t for t in tokens if t.type == "heading_open"]
    # The title and the fixed sections only: the name's "# heading" is no heading of its own.
    assert [t.tag for t in headings] == ["h1", "h2", "h2", "h2", "h2", "h2"]
    title = tokens[tokens.index(headings[0]) + 1].content
    assert title.startswith("\\[x\\]") and "preference data" in title
    # The name reads as typed once rendered (the renderer escapes what HTML needs).
    from html import escape

    assert escape(HOSTILE, quote=False) + ": preference data</h1>" in html
    # The models table keeps four cells per row, the hostile name in one of them.
    models_table = html.split("<th>model</th>")[1].split("</table>")[0]
    for row in models_table.split("<tr>")[2:]:
        assert row.count("<td>") == 4, row
    assert f"<td>{escape(HOSTILE, quote=False)}</td>" in models_table


def test_lead_chosen_names_in_a_code_span_stay_inside_it(api, bob, judged):
    """The slug is shown as code: a slug is letters, digits, - and _, shown as they are."""
    text = card(api, bob)
    assert "Project `demo`" in text
    assert "`GET /api/v1/projects/demo/stats/`" in text
