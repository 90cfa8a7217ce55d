"""A day's work by keyboard, as a professional annotator does it (issue 15).

Pairwise, graded-with-criteria and listwise, on a laptop (1366x768) and a tablet (768x1024): for
every comparison, the question being answered (the conversation's last user turn) and the
judging controls are on screen when it appears, the page and the panes start at their top,
nothing hides behind the sticky button bar, each judgment is confirmed on screen, and the
console stays clean.

Run with SCREENSHOTS=1 to refresh docs/annotate*.png.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from apps.batches.models import Batch
from apps.judging.models import Judgment
from apps.projects.models import Project
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import (
    DOCS,
    configure,
    csp_violations,
    current_assignment,
    next_frames,
    open_project,
    press_and_wait_for_swap,
    record_csp,
)

pytestmark = pytest.mark.django_db(transaction=True)

VIEWPORTS = [(1366, 768), (768, 1024)]
VIEWPORT_IDS = ["laptop", "tablet"]
CRITERIA = [
    {"name": "helpfulness", "description": "Does it do what was asked?"},
    {"name": "honesty", "description": "Is every claim true?"},
]
LONG_TURN = " ".join(["This earlier turn is long and says a great deal about the topic."] * 8)
QUESTION = "So which of these should I use for my release notes?"


def conversation(number: int) -> list[dict[str, str]]:
    """A five-turn conversation whose earlier turns fill more than the prompt box."""
    return [
        {"role": "system", "content": "You are a careful technical writer."},
        {"role": "user", "content": f"Item {number}: help me write release notes. {LONG_TURN}"},
        {"role": "assistant", "content": f"Gladly. {LONG_TURN}"},
        {"role": "user", "content": f"Here is the changelog. {LONG_TURN}"},
        {"role": "assistant", "content": f"Here are three drafts. {LONG_TURN}"},
        {"role": "user", "content": f"{QUESTION} (item {number})"},
    ]


LONG_ANSWER = "\n\n".join(
    [
        f"## Part {i}\n\n" + " ".join(["A long answer sentence that fills the pane."] * 12)
        for i in range(1, 6)
    ]
)


def conversation_rows(count: int, candidates: int = 2) -> list[dict[str, Any]]:
    return [
        {
            "id": f"conv-{number}",
            "prompt": conversation(number),
            "candidates": [
                {
                    "id": name,
                    "text": f"Draft {name.upper()} for item {number}.\n\n{LONG_ANSWER}",
                    "model": f"m-{name}",
                }
                for name in "abcd"[:candidates]
            ],
        }
        for number in range(1, count + 1)
    ]


# What the annotator sees when a comparison appears, measured in the page.
ON_ARRIVAL = """() => {
    const inView = (element) => {
        const box = element.getBoundingClientRect();
        return box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight
            && box.left >= 0 && box.right <= window.innerWidth;
    };
    const topInView = (element) => {
        const box = element.getBoundingClientRect();
        return box.top >= 0 && box.top + 20 <= window.innerHeight;
    };
    // Visible inside its own scrolling box too, and not covered by anything at its middle.
    const shown = (element) => {
        const box = element.getBoundingClientRect();
        const prompt = element.closest(".prompt").getBoundingClientRect();
        const x = box.left + Math.min(box.width / 2, 40);
        const y = box.top + Math.min(box.height / 2, 12);
        const hit = document.elementFromPoint(x, y);
        return topInView(element) && box.top >= prompt.top - 1 && box.top + 20 <= prompt.bottom
            && hit !== null && element.contains(hit);
    };
    const users = document.querySelectorAll("#comparison .prompt .message.user");
    const last = users[users.length - 1];
    const choices = document.querySelector("#comparison .choices");
    return {
        lastUserShown: last ? shown(last) : null,
        lastUserText: last ? last.textContent : null,
        choicesInView: choices ? inView(choices) : null,
        pageTop: window.scrollY,
        panesTop: [...document.querySelectorAll("#comparison .candidate")].map(p => p.scrollTop),
    };
}"""


def assert_item_arrives_well(page: Any, page_log: PageLog, number: int) -> None:
    next_frames(page)  # the page's own scrolling on arrival is done by then
    seen = page.evaluate(ON_ARRIVAL)
    assert seen["lastUserText"] and QUESTION in seen["lastUserText"], seen
    assert seen["lastUserShown"], f"item {number}: the last user turn is not on screen: {seen}"
    assert seen["choicesInView"], f"item {number}: the judging buttons are off screen: {seen}"
    assert seen["pageTop"] == 0, f"item {number}: the page did not start at its top: {seen}"
    assert seen["panesTop"] and all(top == 0 for top in seen["panesTop"]), seen
    assert page_log.real_console_errors() == [], page_log.console_errors
    assert csp_violations(page) == []


def scroll_everything_down(page: Any) -> None:
    """What an annotator does while reading: the page and both panes scrolled well down."""
    page.evaluate(
        """() => {
            const panes = document.querySelectorAll("#comparison .candidate");
            panes.forEach(p => { p.scrollTop = 400; });
            window.scrollTo(0, document.body.scrollHeight);
        }"""
    )
    assert page.evaluate("window.scrollY") > 0


IN_VIEWPORT = """element => {
    const box = element.getBoundingClientRect();
    return box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight;
}"""

FOCUSED_AND_UNCOVERED = """() => {
    const element = document.activeElement;
    const target = element.closest("fieldset") || element;
    const box = target.getBoundingClientRect();
    const own = element.getBoundingClientRect();
    const hit = document.elementFromPoint(own.left + own.width / 2, own.top + own.height / 2);
    return {
        name: element.name || element.id,
        inView: box.top >= 0 && box.bottom <= window.innerHeight,
        uncovered: hit !== null && (hit === element || target.contains(hit)),
        hit: hit ? hit.outerHTML.slice(0, 120) : null,
    };
}"""


def assert_focus_shown(page: Any, name: str) -> None:
    focus = page.evaluate(FOCUSED_AND_UNCOVERED)
    assert focus["name"] == name, focus
    assert focus["inView"], f"{name} is focused but off screen: {focus}"
    assert focus["uncovered"], f"{name} is covered by something else: {focus}"


def assert_judgment_confirmed(page: Any) -> None:
    """After a judgment: the page says it was saved (and what undo does), where it is seen."""
    feedback = page.locator("[data-testid=feedback]")
    assert "Judgment saved." in feedback.inner_text()
    assert "undoes it" in feedback.inner_text()
    assert feedback.get_attribute("role") == "status"
    assert feedback.evaluate(IN_VIEWPORT), "the confirmation is off screen"


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=VIEWPORT_IDS)
@pytest.mark.parametrize("scheme", ["pairwise", "graded", "listwise"])
def test_a_sequence_of_items_by_keyboard_shows_each_question_and_its_controls(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
    scheme: str,
    viewport: tuple[int, int],
) -> None:
    if scheme == "graded":
        configure(project, scheme="graded", criteria=CRITERIA, flags=["factual error"])
    if scheme == "listwise":
        configure(project, scheme="listwise")
    import_rows(*conversation_rows(4, candidates=3 if scheme == "listwise" else 2))
    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    record_csp(page)
    base = live_server.url
    open_project(page, base)
    keys = {
        "pairwise": ["1", "ArrowRight", "3"],
        "graded": ["2", "6", "4"],
        # Listwise: a place for each response by digit (the first place box has the focus from
        # the start), then Enter.
        "listwise": ["2 1 3", "1 2 3", "3 2 1"],
    }[scheme]
    for number, key in enumerate(keys, start=1):
        assert_item_arrives_well(page, page_log, number)
        if scheme == "graded":
            # Every criterion reached from the keyboard, shown and not under the button bar.
            for criterion in CRITERIA:
                page.keyboard.press("c")
                assert_focus_shown(page, f"criterion:{criterion['name']}")
                page.keyboard.press("ArrowRight")
        if scheme == "listwise":
            for place in key.split():
                page.keyboard.press(place)
            key = "Enter"
        scroll_everything_down(page)
        before = current_assignment(page)
        after = press_and_wait_for_swap(page, key)
        assert after and after != before
        assert_judgment_confirmed(page)
    assert_item_arrives_well(page, page_log, len(keys) + 1)
    assert Judgment.objects.count() == len(keys)
    # On to the end of the work, back with undo, and to the home page: every page of the flow.
    if scheme == "pairwise":
        press_and_wait_for_swap(page, "2")
        assert "Nothing left to judge" in page.inner_text("#comparison")
        page.keyboard.press("u")
        page.wait_for_selector("#comparison .choices button")
        assert_item_arrives_well(page, page_log, len(keys) + 1)
    page.keyboard.press("?")
    page.keyboard.press("Escape")
    page.keyboard.press("g")
    page.keyboard.press("g")
    assert csp_violations(page) == []
    page.goto(f"{base}/")
    assert csp_violations(page) == []
    page_log.assert_clean(base)
    # The recorder does hear a violation: an inline style, as htmx's indicator styles were.
    page.evaluate(
        """() => document.body.insertAdjacentHTML("beforeend", '<p style="color: red">x</p>')"""
    )
    page.wait_for_function("window.__csp.length > 0")


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=VIEWPORT_IDS)
def test_a_grade_key_with_a_criterion_unanswered_shows_and_focuses_it(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
    viewport: tuple[int, int],
) -> None:
    configure(project, scheme="graded", criteria=CRITERIA)
    import_rows(*conversation_rows(2))
    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    base = live_server.url
    open_project(page, base)
    # The bar, always in sight, says what is still to answer (the criteria may be out of sight).
    cue = page.locator("#comparison .choices .criteria-left")
    assert cue.inner_text() == "First answer 2 criteria below: c goes to the next one."
    assert cue.evaluate(IN_VIEWPORT)
    first = current_assignment(page)
    page.keyboard.press("6")
    page.locator("fieldset[data-criterion=helpfulness] .missing").wait_for()
    assert current_assignment(page) == first
    assert not Judgment.objects.exists()
    assert_focus_shown(page, "criterion:helpfulness")
    message = page.locator("fieldset[data-criterion=helpfulness] .missing")
    assert message.is_visible()
    assert "helpfulness" in message.inner_text().lower()
    # Answered, the next unanswered one is the one shown; the message of the first is gone.
    page.keyboard.press("ArrowRight")
    assert message.count() == 0
    page.keyboard.press("6")
    assert_focus_shown(page, "criterion:honesty")
    assert page.locator("fieldset[data-criterion=honesty] .missing").is_visible()
    assert cue.inner_text() == "First answer 1 criterion below: c goes to the next one."
    page.keyboard.press("Space")
    assert cue.count() == 0
    after = press_and_wait_for_swap(page, "6")
    assert after and after != first
    assert Judgment.objects.count() == 1
    # A mouse click on a grade does the same, with no browser bubble (ours instead).
    page.locator(".choices.graded button.grade-2").click()
    page.locator("fieldset[data-criterion=helpfulness] .missing").wait_for()
    assert current_assignment(page) == after
    assert_focus_shown(page, "criterion:helpfulness")
    page_log.assert_clean(base)


def test_a_required_rationale_left_empty_is_shown_with_our_message(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    configure(project, rationale="required", rationale_min_length=5)
    import_rows(*conversation_rows(2))
    page.set_viewport_size({"width": 1366, "height": 768})
    base = live_server.url
    open_project(page, base)
    first = current_assignment(page)
    page.keyboard.press("1")
    page.locator("#rationale + .missing").wait_for()
    assert current_assignment(page) == first
    assert_focus_shown(page, "rationale")
    message = page.locator("#rationale + .missing")
    assert message.inner_text() == (
        "Write your rationale first, at least 5 characters (Esc leaves the box), "
        "then press your choice again."
    )
    assert message.evaluate(IN_VIEWPORT)
    page.keyboard.type("Clearer.")
    assert message.count() == 0
    page.keyboard.press("Escape")
    after = press_and_wait_for_swap(page, "1")
    assert after and after != first
    assert Judgment.objects.get().rationale == "Clearer."
    page_log.assert_clean(base)


def test_headings_in_a_response_leave_the_pane_label_in_place(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(*conversation_rows(1))
    page.set_viewport_size({"width": 1366, "height": 768})
    base = live_server.url
    open_project(page, base)
    pane = page.locator(".candidate").first
    heading = pane.locator(".md h2").first
    assert heading.evaluate("h => getComputedStyle(h).position") == "static"
    pane.evaluate("p => { p.scrollTop = p.scrollHeight / 2; }")
    label = pane.locator("> h2")
    probe = label.evaluate(
        """label => {
            const box = label.getBoundingClientRect();
            const pane = label.parentElement.getBoundingClientRect();
            const hit = document.elementFromPoint(box.left + 10, box.top + box.height / 2);
            const stuck = Math.abs(box.top - pane.top) < 3;
            return { stuck, hit: hit !== null && hit.closest("h2") === label };
        }"""
    )
    assert probe == {"stuck": True, "hit": True}
    assert label.inner_text().startswith("Left")
    page_log.assert_clean(base)


def test_links_in_a_response_open_in_a_new_tab(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(
        {
            "id": "links",
            "prompt": "Where are the docs? See [the guide](https://example.invalid/guide).",
            "candidates": [
                {"id": "a", "text": "Read [the docs](https://example.invalid/docs)."},
                {
                    "id": "b",
                    "text": "See <https://example.invalid/b> or ![pic](https://example.invalid/p.png)",
                },
            ],
        }
    )
    base = live_server.url
    page.context.route("https://example.invalid/**", lambda route: route.fulfill(body="elsewhere"))
    open_project(page, base)
    links = page.locator("#comparison .md a")
    assert links.count() == 4
    for attributes in links.evaluate_all(
        "links => links.map(a => [a.getAttribute('target'), a.getAttribute('rel')])"
    ):
        assert attributes[0] == "_blank", attributes
        assert set(attributes[1].split()) >= {"noopener", "noreferrer"}, attributes
    # A click opens another tab; the judging page stays where it was.
    with page.context.expect_page() as opened:
        page.locator(".candidate .md a").first.click()
    opened.value.close()
    assert page.url == f"{base}/p/demo/"
    assert current_assignment(page)
    page_log.console_errors.clear()  # the other tab's, if any, are not the judging page's
    page_log.requests.clear()
    press_and_wait_for_swap(page, "1")
    page_log.assert_clean(base)


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=VIEWPORT_IDS)
@pytest.mark.parametrize("scheme", ["pairwise", "graded"])
def test_it_takes_the_judging_screenshots_for_the_docs(
    tmp_path: Path,
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
    scheme: str,
    viewport: tuple[int, int],
) -> None:
    """docs/annotate[-graded][-tablet].png: the screen as it appears (not the full page)."""
    target = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path
    configure(project, name="Release notes, compared")
    if scheme == "graded":
        configure(
            project,
            name="Release notes, graded",
            scheme="graded",
            criteria=CRITERIA,
            flags=["factual error"],
        )
    import_rows(*conversation_rows(2))
    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    base = live_server.url
    open_project(page, base)
    if scheme == "pairwise":
        press_and_wait_for_swap(page, "1")  # the second item, as it arrives after a swap
    name = "annotate" + ("-graded" if scheme == "graded" else "")
    name += "-tablet" if viewport[0] < 1000 else ""
    next_frames(page)
    page.screenshot(path=str(target / f"{name}.png"))
    assert (target / f"{name}.png").stat().st_size > 10_000
    page_log.assert_clean(base)


@pytest.mark.parametrize("key", ["c", "Tab"])
def test_a_criterion_focused_under_the_button_bar_is_lifted_clear_of_it(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
    key: str,
) -> None:
    configure(project, scheme="graded", criteria=CRITERIA)
    import_rows(*conversation_rows(1))
    page.set_viewport_size({"width": 1366, "height": 768})
    base = live_server.url
    open_project(page, base)
    # The page scrolled so that the first criterion's radios sit behind the sticky bar.
    page.evaluate(
        """() => {
            const radio = document.querySelector("fieldset.criterion input");
            const bar = document.querySelector(".choices").getBoundingClientRect();
            const box = radio.getBoundingClientRect();
            window.scrollBy(0, box.top - (bar.top + bar.height / 2));
        }"""
    )
    covered = page.evaluate(
        """() => {
            const radio = document.querySelector("fieldset.criterion input");
            const box = radio.getBoundingClientRect();
            const x = box.left + box.width / 2, y = box.top + box.height / 2;
            const hit = document.elementFromPoint(x, y);
            return box.bottom < window.innerHeight && hit !== radio;
        }"""
    )
    assert covered, "the set-up did not put the criterion behind the bar"
    if key == "Tab":
        page.focus("#scroll-together")
        page.evaluate(
            """() => document.querySelectorAll(".candidate").forEach(pane => pane.tabIndex = -1)"""
        )
        page.evaluate(
            """() => {
                const radio = document.querySelector("fieldset.criterion input");
                const box = radio.getBoundingClientRect();
                const bar = document.querySelector(".choices").getBoundingClientRect();
                window.scrollBy(0, box.top - (bar.top + bar.height / 2));
            }"""
        )
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
    else:
        page.keyboard.press("c")
    assert_focus_shown(page, "criterion:helpfulness")
    page_log.assert_clean(base)


# Every word of a label against the room its button gives it: a word wider than the room is one
# that `overflow-wrap: anywhere` breaks mid-word ("significa-ntly").
WORDS_WIDER_THAN_THEIR_BUTTON = """() => {
  const broken = [];
  for (const button of document.querySelectorAll(".choices.graded button")) {
    const style = getComputedStyle(button);
    const padding = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
    const room = button.clientWidth - padding;
    const label = button.firstChild.textContent.trim();
    for (const word of label.split(/\\s+/)) {
      const probe = document.createElement("span");
      probe.style.font = style.font;
      probe.style.whiteSpace = "nowrap";
      probe.style.position = "absolute";
      probe.textContent = word;
      document.body.appendChild(probe);
      if (probe.getBoundingClientRect().width > room + 0.5) broken.push(word);
      probe.remove();
    }
  }
  return broken;
}"""


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=VIEWPORT_IDS)
def test_the_graded_scale_breaks_no_word_of_its_labels(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
    viewport: tuple[int, int],
) -> None:
    configure(project, scheme="graded", criteria=CRITERIA)
    import_rows(*conversation_rows(1))
    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    base = live_server.url
    open_project(page, base)
    buttons = page.locator(".choices.graded button")
    assert buttons.count() == 8
    assert page.evaluate(WORDS_WIDER_THAN_THEIR_BUTTON) == []
    # Every button in sight, whole, above the bottom of the window.
    for index in range(8):
        box = buttons.nth(index).bounding_box()
        assert box is not None
        assert box["y"] >= 0 and box["y"] + box["height"] <= viewport[1]
    page_log.assert_clean(base)
