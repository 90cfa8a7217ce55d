"""Each judgment scheme end to end in a real browser, by keyboard alone."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.batches.models import Batch, Comparison
from apps.judging.models import Assignment, Judgment
from apps.projects.models import Project
from tests.conftest import prompt_line
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import (
    DOCS,
    configure,
    current_assignment,
    fill_login,
    next_frames,
    open_project,
    press_and_wait_for_swap,
    wait_for_held,
)

pytestmark = pytest.mark.django_db(transaction=True)

CRITERIA = [
    {"name": "helpfulness", "description": "Does it do what was asked?"},
    {"name": "honesty", "description": "Is every claim true?"},
]


def assert_not_sent(page: Any, before: str) -> None:
    """The key did not submit: the same comparison is still there and nothing was stored.

    A judgment sent by htmx shows at once: the prefetched card replaces this one, or the form
    is busy (.htmx-request) until the answer, which brings another comparison.
    """
    next_frames(page)
    assert page.locator(".htmx-request").count() == 0
    assert current_assignment(page) == before
    assert not Judgment.objects.exists()


def left_is_a(assignment_id: str) -> bool:
    assignment = Assignment.objects.get(pk=assignment_id)
    comparison = Comparison.objects.get(pk=assignment.comparison_id)
    return assignment.left_id == comparison.candidate_a_id


def test_graded_with_criteria_by_keyboard_alone(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    configure(project, scheme="graded", criteria=CRITERIA, flags=["factual error"])
    import_rows(*(prompt_line(f"g-{i}") for i in range(3)))
    base = live_server.url
    open_project(page, base)
    assert page.locator(".choices.graded button").count() == 8  # 7 grades and both bad
    first = current_assignment(page)
    assert first

    # The overall grade cannot go before the criteria are answered.
    page.keyboard.press("6")
    assert_not_sent(page, first)

    # c: to the first unanswered criterion; arrows pick within it (natively, as radios do).
    page.keyboard.press("c")
    assert page.evaluate("document.activeElement.name") == "criterion:helpfulness"
    page.keyboard.press("ArrowRight")  # -3 -> -2: left is better
    page.keyboard.press("c")
    assert page.evaluate("document.activeElement.name") == "criterion:honesty"
    page.keyboard.press("Space")  # -3: left is significantly better
    # The grade key works from there: 6 is "right is better" (+2).
    after = press_and_wait_for_swap(page, "6")
    assert after and after != first
    page_log.assert_clean(base)

    judgment = Judgment.objects.get()
    flip = -1 if left_is_a(first) else 1
    assert (judgment.choice, judgment.strength) == ("right", 2 * flip)
    assert judgment.criteria == {
        "helpfulness": {"option": "a" if flip == -1 else "b", "strength": -2 * flip},
        "honesty": {"option": "a" if flip == -1 else "b", "strength": -3 * flip},
    }
    assert judgment.guideline_version == 1


def test_graded_without_criteria_judges_with_one_key(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    configure(project, scheme="graded")
    import_rows(*(prompt_line(f"g-{i}") for i in range(5)))
    base = live_server.url
    open_project(page, base)
    leases: list[str] = []
    for key in ["1", "4", "7", "b"]:
        lease = current_assignment(page)
        assert lease
        leases.append(lease)
        press_and_wait_for_swap(page, key)
    page_log.assert_clean(base)
    stored = {str(j.assignment_id): (j.choice, j.strength) for j in Judgment.objects.order_by("id")}
    flips = [-1 if left_is_a(lease) else 1 for lease in leases]
    assert [stored[lease] for lease in leases] == [
        ("left", -3 * flips[0]),
        ("tie", 0),
        ("right", 3 * flips[2]),
        ("both_bad", None),
    ]


def test_a_required_rationale_is_written_from_the_keyboard(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    bob: User,
    import_rows: Callable[..., Batch],
) -> None:
    configure(project, rationale="required", rationale_min_length=10, flags=["unsafe content"])
    import_rows(*(prompt_line(f"r-{i}") for i in range(2)))
    base = live_server.url
    open_project(page, base)
    first = current_assignment(page)
    assert first
    # Escape leaves the box; r comes back to it without typing an r.
    page.keyboard.press("r")
    assert page.evaluate("document.activeElement.id") == "rationale"
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    assert page.evaluate("document.activeElement.id") == "rationale"
    page.keyboard.press("Escape")
    # A choice without the rationale is not sent: the browser shows what is missing there.
    page.keyboard.press("1")
    assert_not_sent(page, first)
    assert page.evaluate("document.activeElement.id") == "rationale"
    page.keyboard.type("Short")
    page.keyboard.press("Escape")
    page.keyboard.press("1")
    assert_not_sent(page, first)  # still under 10 characters
    assert page.evaluate("document.activeElement.id") == "rationale"
    page.keyboard.type(" but clear.")
    # The flag, by Tab order before the choices, is checked with Space.
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.name") == "flag"
    page.keyboard.press("Space")
    after = press_and_wait_for_swap(page, "2")
    assert after != first
    page_log.assert_clean(base)
    judgment = Judgment.objects.get()
    assert (judgment.choice, judgment.rationale, judgment.flags) == (
        "right",
        "Short but clear.",
        ["unsafe content"],
    )


def test_help_guidelines_skip_and_progress_from_the_keyboard(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    bob: User,
    import_rows: Callable[..., Batch],
) -> None:
    from apps.projects.services import project_guidelines_set

    project_guidelines_set(
        project=project, text="## Be fair\n\nPrefer **correct** answers.", by=bob
    )
    import_rows(*(prompt_line(f"h-{i}") for i in range(4)))
    base = live_server.url
    open_project(page, base)
    assert page.inner_text("[data-testid=today]") == "0"
    assert page.inner_text("[data-testid=left]") == "4"

    # ? opens the list of keys as a modal dialog; while it is open, keys do not judge.
    page.keyboard.press("?")
    assert page.locator("dialog#help").evaluate("d => d.open")
    assert "Open or close the guidelines" in page.inner_text("dialog#help")
    first = current_assignment(page)
    assert first
    page.keyboard.press("1")
    assert_not_sent(page, first)
    page.keyboard.press("Escape")
    assert not page.locator("dialog#help").evaluate("d => d.open")

    # g opens the guidelines beside the comparison, rendered, with their version; the keys
    # still judge while they are open.
    page.keyboard.press("g")
    panel = page.locator("aside#guidelines")
    assert panel.is_visible()
    assert panel.locator("h2", has_text="Be fair").count() == 1
    assert "version 2" in panel.inner_text()
    after = press_and_wait_for_swap(page, "1")
    assert after != first
    assert panel.is_visible()
    page.keyboard.press("g")
    assert not panel.is_visible()
    assert page.inner_text("[data-testid=today]") == "1"
    assert page.inner_text("[data-testid=judged]") == "1"

    # s goes to the skip form's reasons; o to the note for Other; a note, Enter skips.
    page.keyboard.press("s")
    assert page.evaluate("document.activeElement.dataset.skipKey") == "1"
    page.keyboard.press("o")
    page.keyboard.type("Not my language.")
    before = current_assignment(page)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "before => document.querySelector('section#comparison').dataset.assignment !== before",
        arg=before,
    )
    page_log.assert_clean(base)
    assert Judgment.objects.get().guideline_version == 2


def test_undo_by_keyboard_brings_the_comparison_back(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(*(prompt_line(f"u-{i}") for i in range(3)))
    base = live_server.url
    open_project(page, base)
    assert page.locator("form.undo").count() == 0  # nothing to undo yet
    texts = page.locator(".candidate .md").all_inner_texts()
    first = current_assignment(page)
    press_and_wait_for_swap(page, "1")
    assert Judgment.objects.count() == 1
    back = press_and_wait_for_swap(page, "u")
    assert back != first  # a new lease...
    assert page.locator(".candidate .md").all_inner_texts() == texts  # ...on the same sides
    assert "Undone: you had answered “Left is better”" in page.inner_text(".notice")
    assert not Judgment.objects.exists()
    press_and_wait_for_swap(page, "2")
    page_log.assert_clean(base)
    judgment = Judgment.objects.get()
    assert (judgment.choice, str(judgment.assignment_id)) == ("right", back)


def test_a_choice_made_as_the_session_expires_is_sent_after_login(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(*(prompt_line(f"s-{i}") for i in range(3)))
    base = live_server.url
    open_project(page, base)
    first = current_assignment(page)
    assert first
    page.keyboard.press("r")
    page.keyboard.type("Kept across the login.")
    page.keyboard.press("Escape")
    # The session expires while the annotator reads (the CSRF cookie, a year long, stays).
    kept = [c for c in page.context.cookies() if c["name"] != "sessionid"]
    page.context.clear_cookies()
    page.context.add_cookies(kept)
    with page.expect_navigation():
        page.keyboard.press("2")
    assert "/accounts/login/" in page.url
    assert not Judgment.objects.exists()
    fill_login(page, "ann")
    assert page.url == f"{base}/p/demo/"
    page.wait_for_function(
        "first => document.querySelector('section#comparison').dataset.assignment !== first",
        arg=first,
    )
    judgment = Judgment.objects.get()
    assert (str(judgment.assignment_id), judgment.choice) == (first, "right")
    assert judgment.rationale == "Kept across the login."
    assert page.inner_text("[data-testid=judged]") == "1"
    # Sent once: a reload sends nothing again.
    page.reload()
    page.wait_for_load_state("networkidle")  # a resent judgment would be on the wire by then
    assert Judgment.objects.count() == 1
    page_log.assert_clean(base)


def shown_externals(assignment_id: str) -> list[str]:
    from apps.batches.models import Candidate

    order = Assignment.objects.get(pk=assignment_id).shown_order
    assert order
    external = dict(Candidate.objects.filter(pk__in=order).values_list("id", "external_id"))
    return [external[pk] for pk in order]


def test_listwise_by_keyboard_alone(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    configure(project, scheme="listwise")
    import_rows(prompt_line("l-1", n=4), prompt_line("l-2", n=4))
    base = live_server.url
    open_project(page, base)
    first = current_assignment(page)
    assert first
    assert page.locator(".candidates.listwise .candidate").count() == 4
    # The first place has the focus; each digit places a response and moves on: 2, 1, 4, 2
    # (a tie for second).
    page.wait_for_function("document.activeElement && document.activeElement.id === 'rank-1'")
    for place in ["2", "1", "4", "2"]:
        page.keyboard.press(place)
    after = press_and_wait_for_swap(page, "Enter")
    assert after != first
    page_log.assert_clean(base)
    shown = shown_externals(first)
    from apps.batches.models import Candidate

    external = dict(Candidate.objects.values_list("id", "external_id"))
    ranking = [[external[pk] for pk in group] for group in Judgment.objects.get().ranking or []]
    assert ranking == [[shown[1]], [shown[0], shown[3]], [shown[2]]]


def test_listwise_by_drag(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    configure(project, scheme="listwise", allow_tie=False)
    import_rows(prompt_line("d-1", n=3), prompt_line("d-2", n=3))
    base = live_server.url
    open_project(page, base)
    first = current_assignment(page)
    assert first
    # Drag response 3 to the top, then response 1 below response 2.
    page.drag_and_drop(".rank-item[data-position='3']", ".rank-item[data-position='1']")
    # The places sit in a row: the right half of response 2 drops after it.
    box = page.locator(".rank-item[data-position='2']").bounding_box()
    assert box
    page.drag_and_drop(
        ".rank-item[data-position='1']",
        ".rank-item[data-position='2']",
        target_position={"x": box["width"] - 5, "y": box["height"] / 2},
    )
    order = page.eval_on_selector_all(
        ".rank-item",
        "items => items.map(i => i.dataset.position + ':' + i.querySelector('select').value)",
    )
    assert order == ["3:1", "2:2", "1:3"], order
    page.focus("#rank-1")
    press_and_wait_for_swap(page, "Enter")
    page_log.assert_clean(base)
    shown = shown_externals(first)
    from apps.batches.models import Candidate

    external = dict(Candidate.objects.values_list("id", "external_id"))
    ranking = [[external[pk] for pk in group] for group in Judgment.objects.get().ranking or []]
    assert ranking == [[shown[2]], [shown[1]], [shown[0]]]


def prompt_text(page: Any) -> str:
    return str(page.inner_text("section#comparison .prompt")).strip()


def test_the_next_comparison_is_prefetched_and_shown_at_once(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(*(prompt_line(f"pf-{i}", prompt=f"Question number {i}?") for i in range(4)))
    base = live_server.url
    open_project(page, base)
    prefer = page.get_attribute("form.judge input[name=prefer]", "value")
    assert prefer
    upcoming = page.eval_on_selector(
        "template#prefetched", "t => t.content.querySelector('.prompt').textContent.trim()"
    )
    held: list[Any] = []
    page.route("**/p/demo/a/*/", lambda route: held.append(route))  # hold the judgment
    page.keyboard.press("1")
    # Before any answer: the prefetched comparison is on screen, read-only.
    page.wait_for_function("() => document.querySelector('section[aria-busy=true]') !== null")
    wait_for_held(page, held)
    assert len(held) == 1
    assert prompt_text(page) == upcoming
    assert page.eval_on_selector_all(".choices button", "bs => bs.every(b => b.disabled)")
    held[0].continue_()
    page.wait_for_function(
        "() => !['prefetched', null].includes(document.querySelector('section#comparison')"
        ".getAttribute('data-assignment'))"
    )
    page.unroute("**/p/demo/a/*/")
    # The answer leased that very comparison: same text, now with a real lease, no notice.
    assert prompt_text(page) == upcoming
    leased = current_assignment(page)
    assert leased
    lease = Assignment.objects.get(pk=leased)
    assert str(lease.comparison_id) == prefer.split(":")[0]
    assert page.locator(".notice").count() == 0
    page_log.assert_clean(base)


def test_a_prefetched_comparison_taken_meanwhile_is_replaced(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    annotators: list[User],
    import_rows: Callable[..., Batch],
) -> None:
    from apps.judging.queue import Preference, assignment_next, judgment_submit

    configure(project, overlap=1)
    import_rows(*(prompt_line(f"tk-{i}", prompt=f"Topic {i}?") for i in range(4)))
    base = live_server.url
    open_project(page, base)
    prefer = Preference.parse(page.get_attribute("form.judge input[name=prefer]", "value") or "")
    assert prefer
    # Someone else takes and fills the prefetched comparison while ann reads.
    other = assignment_next(project=project, annotator=annotators[1], prefer=prefer)
    assert other is not None and other.comparison_id == prefer.comparison_id
    judgment_submit(assignment_id=other.pk, annotator=annotators[1], choice="left")
    after = press_and_wait_for_swap(page, "1")
    assert after
    lease = Assignment.objects.get(pk=after)
    assert lease.comparison_id != prefer.comparison_id
    assert "taken by others in the meantime" in page.inner_text(".notice")
    page_log.assert_clean(base)


GRADED_PROMPT = "How do I reverse a list in Python without changing the original?"
GRADED_LEFT = (
    "Use slicing, which makes a reversed copy:\n\n```python\nitems = [1, 2, 3]\n"
    "backwards = items[::-1]\n```\n\n`items` is left as it was."
)
GRADED_RIGHT = (
    "Call `reverse()`:\n\n```python\nitems.reverse()\n```\n\nThis reverses the list in place "
    "(so the original *does* change)."
)


def test_it_takes_the_scheme_screenshots_for_the_docs(
    tmp_path: Any,
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    """docs/annotate-listwise.png, refreshed with SCREENSHOTS=1
    (otherwise written to a temporary folder, so that a run never rewrites tracked files)."""
    import os

    from apps.projects.services import project_guidelines_set

    target = DOCS
    if os.environ.get("SCREENSHOTS") != "1":
        target = tmp_path
    page.set_viewport_size({"width": 1280, "height": 1000})
    configure(
        project,
        name="Python answers, graded",
        scheme="graded",
        criteria=[
            {"name": "correctness", "description": "Does the code do what was asked?"},
            {"name": "clarity", "description": "Is it easy to follow?"},
        ],
        flags=["factual error", "unsafe content"],
    )
    project_guidelines_set(project=project, text="Prefer answers that are **correct** first.")
    import_rows(
        {
            "id": "g-1",
            "prompt": GRADED_PROMPT,
            "candidates": [
                {"id": "a", "text": GRADED_LEFT, "model": "m-a"},
                {"id": "b", "text": GRADED_RIGHT, "model": "m-b"},
            ],
        }
    )
    base = live_server.url
    open_project(page, base)
    page.keyboard.press("c")
    page.keyboard.press("ArrowRight")
    # docs/annotate-graded.png shows a conversation now: test_keyboard_journey takes it.
    page.screenshot(path=str(tmp_path / "annotate-graded.png"), full_page=True)
    assert (tmp_path / "annotate-graded.png").stat().st_size > 10_000

    configure(project, name="Summaries, ranked", scheme="listwise", criteria=[])
    from apps.batches.models import Comparison

    Comparison.objects.update(complete=True)
    Assignment.objects.filter(status="open").update(status="expired")
    import_rows(
        {
            "id": "l-1",
            "prompt": "Summarize: the meeting moved to Thursday because the room was booked.",
            "candidates": [
                {"id": "s1", "text": "The meeting is now on Thursday: the room was taken."},
                {"id": "s2", "text": "Meeting moved."},
                {"id": "s3", "text": "Thursday, because of the room booking."},
                {"id": "s4", "text": "The room was booked, so the meeting moved to Thursday."},
            ],
        }
    )
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{base}/p/demo/")
    # By keyboard, as annotators do: three places typed, the fourth response marked.
    page.wait_for_function("document.activeElement && document.activeElement.id === 'rank-1'")
    for place in ["1", "4", "3"]:
        page.keyboard.press(place)
    page.screenshot(path=str(target / "annotate-listwise.png"))
    assert (target / "annotate-listwise.png").stat().st_size > 10_000
    page_log.assert_clean(base)


# Hostile text a lead or an annotator can type: guidelines (Markdown), skip reasons, flags'
# neighbours, and rationales (shown back in the admin). With the prompts and candidates of
# test_annotate_browser's hostile test, well over twenty payloads.
PAYLOADS = [
    "<script>window.__xss=1;alert(1)</script>",
    '<img src=x onerror="window.__xss=1;alert(1)">',
    '<svg onload="window.__xss=1">',
    '<iframe src="javascript:window.__xss=1"></iframe>',
    "<style>body{display:none}</style>",
    '<a href="javascript:window.__xss=1">a</a>',
    "[md link](javascript:window.__xss=1)",
    "[data link](data:text/html,<script>window.__xss=1</script>)",
    "![pixel](http://example.invalid/p.png)",
    '<details open ontoggle="window.__xss=1">x</details>',
    '<body onload="window.__xss=1">',
    '<math><mtext><table><mglyph><style><img src=x onerror="window.__xss=1">',
    '"><script>window.__xss=1</script>',
    "javascript:window.__xss=1//",
    '<input autofocus onfocus="window.__xss=1">',
    '<object data="javascript:window.__xss=1"></object>',
    '<meta http-equiv="refresh" content="0;url=javascript:window.__xss=1">',
    "```html\n<script>window.__xss=1</script>\n```",
    '<base href="http://example.invalid/">',
    '<form action="javascript:window.__xss=1"><button>go</button></form>',
    '<div style="background:url(javascript:window.__xss=1)">s</div>',
    "{{ request }} {% debug %}",
]

PAGE_PROBE = """() => {
    const handlers = [];
    for (const element of document.querySelectorAll("body *")) {
        for (const attribute of element.attributes) {
            if (attribute.name.toLowerCase().startsWith("on")) handlers.push(element.tagName);
        }
    }
    return {
        xss: window.__xss === undefined ? null : String(window.__xss),
        handlers,
        scripts: [...document.scripts].filter(s => !s.src).length,
        frames: document.querySelectorAll("iframe, object, embed, base, meta[http-equiv]").length,
        display: getComputedStyle(document.body).display,
    };
}"""


def assert_page_safe(page: Any, page_log: PageLog, base: str) -> None:
    probe = page.evaluate(PAGE_PROBE)
    assert probe == {"xss": None, "handlers": [], "scripts": 0, "frames": 0, "display": "block"}
    page_log.assert_clean(base)


def test_hostile_guidelines_skip_reasons_and_rationales_stay_text(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    alice: User,
    import_rows: Callable[..., Batch],
) -> None:
    from apps.projects.services import project_guidelines_set

    project_guidelines_set(project=project, text="\n\n".join(PAYLOADS))
    configure(project, skip_reasons=PAYLOADS[:6])
    import_rows(*(prompt_line(f"x-{i}") for i in range(3)))
    base = live_server.url
    open_project(page, base)
    page.keyboard.press("g")
    assert page.locator("aside#guidelines").is_visible()
    guidelines = page.inner_text("aside#guidelines")
    assert "<script>window.__xss=1;alert(1)</script>" in guidelines  # shown, as text
    assert "{{ request }} {% debug %}" in guidelines
    assert_page_safe(page, page_log, base)
    page.keyboard.press("g")
    # Skip reasons are options, as text.
    assert PAYLOADS[1] in page.inner_text("form.skip")
    # A hostile rationale is stored as typed...
    page.keyboard.press("r")
    page.keyboard.type(PAYLOADS[11] + " " + PAYLOADS[0])
    page.keyboard.press("Escape")
    press_and_wait_for_swap(page, "1")
    assert_page_safe(page, page_log, base)
    judgment = Judgment.objects.get()
    assert judgment.rationale == PAYLOADS[11] + " " + PAYLOADS[0]
    # ...and shown as text where a lead reads it, in the admin.
    page.context.clear_cookies()
    page.goto(f"{base}/accounts/login/")
    fill_login(page, alice.username)
    page.goto(f"{base}/admin/judging/judgment/{judgment.pk}/change/")
    assert "<script>window.__xss=1;alert(1)</script>" in page.inner_text("#content")
    assert page.evaluate("window.__xss === undefined")
    assert page_log.dialogs == []
    assert page_log.foreign_requests(base) == []


# WCAG AA contrast of every element's own text, a name for every control, sideways overflow,
# positive tabindex values: computed in the page.
A11Y_PROBE = (Path(__file__).parent / "a11y_probe.js").read_text()


@pytest.mark.parametrize("scheme", ["pairwise", "graded", "listwise"])
@pytest.mark.parametrize("viewport", [(1366, 768), (768, 1024)], ids=["laptop", "tablet"])
def test_the_page_is_accessible_on_a_laptop_and_a_tablet(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
    scheme: str,
    viewport: tuple[int, int],
) -> None:
    """Real labels on every control, enough contrast (WCAG AA), no sideways scrolling, a
    logical tab order (no positive tabindex) and a visible focus."""
    settings: dict[str, Any] = {"scheme": scheme, "flags": ["factual error"]}
    if scheme != "listwise":
        settings["criteria"] = [{"name": "helpfulness", "description": "Does it help?"}]
    configure(project, **settings)
    long = "A long response line " * 40
    import_rows(*(prompt_line(f"a-{i}", n=4 if scheme == "listwise" else 2) for i in range(2)))
    from apps.batches.models import Candidate

    Candidate.objects.update(text=long + "\n\n```python\nprint('x' * 200)\n```")
    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    base = live_server.url
    open_project(page, base)
    probe = page.evaluate(A11Y_PROBE)
    assert probe["overflow"] <= 1, f"the page scrolls sideways by {probe['overflow']} px"
    assert probe["unnamed"] == [], probe["unnamed"]
    assert probe["lowContrast"] == [], probe["lowContrast"]
    assert probe["positiveTabindex"] == 0
    # Tab reaches a control whose focus is visible.
    page.keyboard.press("Tab")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline
    # The submit controls fit on screen once scrolled to.
    submit = page.locator("form.judge .choices button").first
    submit.scroll_into_view_if_needed()
    assert submit.is_visible()
    page_log.assert_clean(base)
    # The probe does catch what it looks for: pale text, an unnamed control.
    page.evaluate(
        """() => {
            const p = document.createElement("p");
            p.textContent = "pale";
            p.style.color = "#cccccc";
            document.querySelector("#main").append(p, document.createElement("select"));
        }"""
    )
    caught = page.evaluate(A11Y_PROBE)
    assert caught["lowContrast"] and caught["unnamed"]


def test_time_on_task_counts_only_while_the_page_is_visible(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(*(prompt_line(f"v-{i}") for i in range(2)))
    base = live_server.url
    # The page's clock (performance.now included) is Playwright's: time is jumped, not waited.
    page.clock.install()
    open_project(page, base)

    def visibility(state: str) -> None:
        page.evaluate(
            """state => {
                Object.defineProperty(document, "visibilityState", {
                    configurable: true, get: () => state,
                });
                document.dispatchEvent(new Event("visibilitychange"));
            }""",
            state,
        )

    page.clock.fast_forward(3_000)  # looking at it
    visibility("hidden")  # another tab, for a while
    page.clock.fast_forward(60_000)
    visibility("visible")
    page.clock.fast_forward(3_000)
    press_and_wait_for_swap(page, "1")
    duration = Judgment.objects.get().duration_ms
    assert duration is not None
    # 6 s visible, plus the real time the test's own steps took (well under a minute even on a
    # loaded machine); counting the minute hidden would give at least 66 s.
    assert 6_000 <= duration < 60_000, duration
    page_log.assert_clean(base)


def test_the_api_docs_page_renders_from_our_own_origin(
    live_server: Any, page: Any, page_log: PageLog
) -> None:
    base = live_server.url
    page.goto(f"{base}/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=10_000)
    assert page.locator(".opblock").count() >= 12
    page_log.assert_clean(base)  # no CSP violation, nothing fetched from elsewhere
