"""The dashboard's charts read as they should: the win-rate matrix says which way it reads and
has room for its last label; a single day of judgments is one modest bar, with its date."""

import re
from xml.etree import ElementTree

import pytest
from django.core.cache import cache
from django.utils import timezone

from apps.batches.models import Comparison
from apps.dashboard import charts
from tests.agreement.test_stats import vote
from tests.conftest import prompt_line

URL = "/lead/p/demo/"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)  # noqa: S314 - our own charts' SVG, made in the test


def svg_of(html: str, uid: str) -> ElementTree.Element:
    match = re.search(rf'<svg class="chart"[^>]*aria-labelledby="{uid}-title.*?</svg>', html, re.S)
    assert match, uid
    return parse(match.group(0))


def test_one_day_of_judgments_is_one_narrow_bar_with_its_date(
    client, bob, project, annotators, import_rows
):
    import_rows(prompt_line("p-1", n=3))
    comparison = Comparison.objects.order_by("id").first()
    for user in annotators:
        vote(project, user, comparison, "a")
    client.force_login(bob)
    html = client.get(URL).content.decode()
    chart = svg_of(html, "chart-per-day")
    bars = chart.findall(f"{SVG}rect")
    assert len(bars) == 1
    assert float(bars[0].get("width")) <= charts.MAX_BAR_W
    today = timezone.now().date().isoformat()
    assert today in [text.text for text in chart.findall(f"{SVG}text")]
    assert f"the judgments of {today}, the only day so far" in chart.find(f"{SVG}desc").text


def test_many_days_keep_their_proportion():
    labels = [f"11-{day:02}" for day in range(1, 15)]
    svg = parse(
        charts.column_chart(
            "c", title="t", desc="d", labels=labels, values=list(range(14)), unit="judgments"
        )
    )
    widths = {float(rect.get("width")) for rect in svg.findall(f"{SVG}rect")}
    assert widths == {round(min((720 - 52) / 14 * 0.76, charts.MAX_BAR_W), 1)}


def test_the_win_rate_matrix_says_the_row_beat_the_column(
    client, bob, project, annotators, import_rows
):
    import_rows(prompt_line("p-1", n=3))
    comparisons = Comparison.objects.order_by("id")
    for comparison in comparisons:
        for user in annotators:
            vote(project, user, comparison, "a")
    client.force_login(bob)
    html = client.get(URL).content.decode()
    assert re.search(
        r'<figcaption data-testid="heat-map-caption">Row beat column: each cell is how often '
        r"the row's model beat the column's model",
        html,
    )
    chart = svg_of(html, "chart-heat-map")
    texts = [text.text for text in chart.findall(f"{SVG}text")]
    assert "row beat column" in texts
    tips = [title.text for title in chart.iter(f"{SVG}title")]
    assert any(re.fullmatch(r".+ beat .+ in \d+% of \d+ votes", tip or "") for tip in tips)


def test_the_win_rate_matrix_has_room_for_its_last_label():
    names = ["a", "b", "a-model-with-a-very-long-name"]
    matrix = [[None, 0.5, 0.5], [0.5, None, 0.5], [0.5, 0.5, None]]
    svg = parse(
        charts.heat_map("h", title="t", desc="d", names=names, matrix=matrix, votes=[[2] * 3] * 3)
    )
    width = float(svg.get("width"))
    last = [t for t in svg.findall(f"{SVG}text") if t.get("transform")][-1]
    label = "".join(last.itertext()).replace(names[-1], "", 1)  # the <title> holds the full name
    # Turned 45 degrees, the label reaches about 0.7 of its length to the right of its start.
    assert width - float(last.get("x")) >= 0.7 * len(label) * 7
