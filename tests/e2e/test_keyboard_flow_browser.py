"""The judging page by keyboard at a laptop's and a tablet's size (issue 15): ranking with
digits from the moment a comparison is shown, feedback after every action, skipping with a
reason's key, and a narrow layout whose labels and keys match what is seen."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from apps.batches.models import Batch, Candidate
from apps.judging.models import Judgment, Skip
from apps.projects.models import Project
from tests.conftest import prompt_line
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import configure, current_assignment, open_project, press_and_wait_for_swap
from tests.e2e.test_schemes_browser import shown_externals

pytestmark = pytest.mark.django_db(transaction=True)

VIEWPORTS = [(1366, 768), (768, 1024)]
DOCS = Path(__file__).resolve().parents[2] / "docs"

# Every element matching the selector lies wholly inside the window, and is what the window
# shows at its centre (not covered by the sticky bar or anything else).
IN_SIGHT = """selector => [...document.querySelectorAll(selector)].map(el => {
    const box = el.getBoundingClientRect();
    const x = box.left + box.width / 2, y = box.top + box.height / 2;
    const top = document.elementFromPoint(x, y);
    return {
        id: el.id || el.textContent.trim().slice(0, 30),
        inside: box.width > 0 && box.top >= 0 && box.left >= 0
            && box.bottom <= window.innerHeight && box.right <= window.innerWidth,
        shown: top !== null && (el === top || el.contains(top) || top.contains(el)),
    };
})"""


def assert_in_sight(page: Any, selector: str) -> None:
    found = page.evaluate(IN_SIGHT, selector)
    assert found, f"nothing matches {selector}"
    hidden = [f for f in found if not (f["inside"] and f["shown"])]
    assert hidden == [], f"{selector} not in sight: {hidden}"


def focused_id(page: Any) -> str:
    return str(page.evaluate("document.activeElement && document.activeElement.id"))


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["laptop", "tablet"])
def test_listwise_ranks_a_sequence_by_keyboard_alone(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
    viewport: tuple[int, int],
) -> None:
    """Three comparisons of four responses ranked with digits and Enter only: no mouse, no
    Tab. Each comparison has its first place box focused (its response marked) the moment it
    is shown; the places and Submit are in sight; a saved judgment says so; an incomplete
    ranking says what is missing, in sight, and puts the focus on it."""
    configure(project, scheme="listwise", overlap=1)
    long = "A response that goes on. " * 60
    import_rows(*(prompt_line(f"l-{i}", n=4) for i in range(3)))
    Candidate.objects.update(text=long)
    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    base = live_server.url
    open_project(page, base)
    wanted = [["2", "1", "4", "3"], ["1", "1", "3", "4"], ["4", "3", "2", "1"]]
    shown: list[list[str]] = []
    for number, places in enumerate(wanted):
        assignment = current_assignment(page)
        assert assignment
        shown.append(shown_externals(assignment))
        # Digits go to the first place box at once; its response is marked.
        page.wait_for_function("document.activeElement && document.activeElement.id === 'rank-1'")
        marked = page.locator(".candidates.listwise .candidate.ranking-now")
        assert marked.count() == 1
        assert marked.get_attribute("aria-labelledby") == "response-1-title"
        assert_in_sight(page, ".rank-bar select")
        assert_in_sight(page, '.rank-bar button[type="submit"]')
        if number == 0:
            # Enter with places missing: nothing is sent; the bar says which, in sight, and
            # the first missing place gets the focus.
            page.keyboard.press(places[0])
            assert focused_id(page) == "rank-2"
            page.keyboard.press("Enter")
            error = page.locator(".rank-error")
            assert error.is_visible()
            assert "Response 2, Response 3, Response 4 have none" in error.inner_text()
            assert_in_sight(page, ".rank-error")
            assert focused_id(page) == "rank-2"
            assert current_assignment(page) == assignment
            assert not Judgment.objects.exists()
            rest = places[1:]
        else:
            rest = places
        for place in rest:
            page.keyboard.press(place)
        values = page.eval_on_selector_all(".rank-list select", "boxes => boxes.map(b => b.value)")
        assert values == places
        after = press_and_wait_for_swap(page, "Enter")
        assert after != assignment
        feedback = page.locator("[data-testid=feedback]")
        assert "Judgment saved." in feedback.inner_text()
        assert "undoes it" in feedback.inner_text()
        assert feedback.get_attribute("role") == "status"
        assert_in_sight(page, "[data-testid=feedback]")
        assert page.inner_text("[data-testid=left]") == str(2 - number)
    assert "Nothing left to judge" in page.inner_text("section#comparison")
    page_log.assert_clean(base)
    external = dict(Candidate.objects.values_list("id", "external_id"))
    judgments = list(Judgment.objects.order_by("id"))
    assert len(judgments) == 3
    for judgment, places, order in zip(judgments, wanted, shown, strict=True):
        ranking = [[external[pk] for pk in group] for group in judgment.ranking or []]
        expected: dict[int, list[str]] = {}
        for position, place in enumerate(places):
            expected.setdefault(int(place), []).append(order[position])
        assert ranking == [expected[p] for p in sorted(expected)]


def test_listwise_backspace_clears_and_ties_off_are_said(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    configure(project, scheme="listwise", allow_tie=False)
    import_rows(prompt_line("t-1", n=3), prompt_line("t-2", n=3))
    base = live_server.url
    open_project(page, base)
    first = current_assignment(page)
    page.wait_for_function("document.activeElement && document.activeElement.id === 'rank-1'")
    for key in ["1", "2"]:
        page.keyboard.press(key)
    assert focused_id(page) == "rank-3"
    page.keyboard.press("Backspace")  # nothing there yet: still empty
    page.keyboard.press("2")  # a tie for second, which this project does not allow
    page.keyboard.press("Enter")
    error = page.locator(".rank-error")
    assert "Response 2 and Response 3 both have place 2" in error.inner_text()
    assert focused_id(page) == "rank-3"
    page.keyboard.press("Backspace")
    assert page.input_value("#rank-3") == ""
    page.keyboard.press("3")
    press_and_wait_for_swap(page, "Enter")
    assert current_assignment(page) != first
    assert Judgment.objects.count() == 1
    page_log.assert_clean(base)


def test_skipping_takes_s_and_a_reason_key(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    reasons = list(project.skip_reasons)
    assert len(reasons) >= 2
    import_rows(*(prompt_line(f"s-{i}") for i in range(4)))
    base = live_server.url
    open_project(page, base)
    # The buttons show their keys.
    assert page.inner_text("form.skip button[data-skip-key='2']") == f"{reasons[1]} 2"
    # s, then 2: skipped for the second reason; the status says so.
    page.keyboard.press("s")
    assert page.evaluate("document.activeElement.dataset.skipKey") == "1"
    first = current_assignment(page)
    press_and_wait_for_swap(page, "2")
    skip = Skip.objects.get()
    assert (str(skip.assignment_id), skip.reason) == (first, reasons[1])
    assert "Skipped" in page.inner_text("[data-testid=feedback]")
    assert not Judgment.objects.exists()
    # s, Esc: back, nothing skipped; the digits judge again.
    page.keyboard.press("s")
    page.keyboard.press("Escape")
    assert focused_id(page) == "comparison-title"
    assert Skip.objects.count() == 1
    # s, o, a note, Enter: skipped for Other, with the note.
    page.keyboard.press("s")
    page.keyboard.press("o")
    assert focused_id(page) == "skip-note"
    page.keyboard.type("Not my language.")
    second = current_assignment(page)
    assert second is not None
    press_and_wait_for_swap(page, "Enter")
    skip = Skip.objects.get(assignment_id=second)
    assert (skip.reason, skip.note) == ("other", "Not my language.")
    # A judgment after skips: the digit judges, and says so.
    press_and_wait_for_swap(page, "1")
    assert "Judgment saved." in page.inner_text("[data-testid=feedback]")
    assert Judgment.objects.count() == 1
    page_log.assert_clean(base)


def test_a_project_without_skip_reasons_skips_with_s_enter(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    configure(project, skip_reasons=[])
    import_rows(*(prompt_line(f"n-{i}") for i in range(2)))
    base = live_server.url
    open_project(page, base)
    first = current_assignment(page)
    page.keyboard.press("s")
    assert page.evaluate("document.activeElement.dataset.skipKey") == "Enter"
    press_and_wait_for_swap(page, "Enter")
    skip = Skip.objects.get()
    assert (str(skip.assignment_id), skip.reason) == (first, "")
    assert "Skipped" in page.inner_text("[data-testid=feedback]")
    page_log.assert_clean(base)


def kbd_heights(page: Any, selector: str) -> list[float]:
    return page.eval_on_selector_all(
        selector, "els => els.map(e => e.getBoundingClientRect().height)"
    )


@pytest.mark.parametrize("scheme", ["pairwise", "graded"])
def test_at_768_px_the_panes_and_keys_say_what_is_seen(
    tmp_path: Any,
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
    scheme: str,
) -> None:
    """At 768x1024, Left is left of Right (the keys say ← and →), and no key hint is split
    over two lines: every hint is as tall as a one-line hint. The pairwise page is the docs'
    narrow screenshot (docs/annotate-narrow.png, rewritten with SCREENSHOTS=1)."""
    configure(project, scheme=scheme, name="Answers, on a tablet")
    import_rows(
        {
            "id": "w-1",
            "prompt": "Explain in two sentences why the sky is blue.",
            "candidates": [
                {
                    "id": "a",
                    "text": "Sunlight scatters off air molecules, and blue light, "
                    "with its shorter wavelength, scatters the most. So the sky looks blue from "
                    "every direction.",
                },
                {"id": "b", "text": "Because it reflects the ocean."},
            ],
        }
    )
    page.set_viewport_size({"width": 768, "height": 1024})
    base = live_server.url
    open_project(page, base)
    left = page.locator(".candidate").nth(0).bounding_box()
    right = page.locator(".candidate").nth(1).bounding_box()
    assert left and right
    assert left["x"] + left["width"] <= right["x"], (left, right)  # side by side
    assert abs(left["y"] - right["y"]) < 1
    assert page.inner_text("#left-title").startswith("Left")
    assert page.inner_text("#right-title").startswith("Right")
    # One line's height: the Keys link's hint, outside the bar.
    line = kbd_heights(page, ".progress-note kbd")[0]
    hints = kbd_heights(page, "form.judge .choices kbd, form.skip kbd")
    assert hints and all(abs(h - line) < 1 for h in hints), (line, hints)
    buttons = page.locator("form.judge .choices button")
    tops = [round(buttons.nth(i).bounding_box()["y"]) for i in range(buttons.count())]
    if scheme == "graded":
        # Below 900 px the scale's eight buttons take two rows of four, in order (1-4, 5-7 and
        # both bad), so that no label breaks mid-word.
        assert len(tops) == 8
        assert len(set(tops[:4])) == 1 and len(set(tops[4:])) == 1, tops
        assert tops[0] < tops[4], tops
    else:
        assert len(set(tops)) == 1, f"the choices wrap onto {len(set(tops))} rows"
    if scheme == "pairwise":
        assert page.inner_text("button[data-choice=left] kbd") == "1 or ←"
        assert page.inner_text("button[data-choice=right] kbd") == "2 or →"
        target = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path
        page.screenshot(path=str(target / "annotate-narrow.png"))
        assert (target / "annotate-narrow.png").stat().st_size > 10_000
    page_log.assert_clean(base)
