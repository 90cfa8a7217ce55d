"""The judging page in a real browser: keyboard flow, hostile content, no-JS fallback, CSP.

The pictures in docs/ are taken by test_keyboard_journey.py (docs/annotate*.png) and
test_home_browser.py (docs/home*.png), with SCREENSHOTS=1.
"""

import json
import os
import re
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from apps.batches.models import Batch, Comparison
from apps.judging.models import Assignment, Judgment
from apps.projects.models import Membership, Project
from tests.conftest import prompt_line
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import (
    DOCS,
    WAIT_MS,
    current_assignment,
    log_in,
    press_and_wait_for_swap,
    send_probe,
    wait_for_held,
)

pytestmark = pytest.mark.django_db(transaction=True)

KEY_CHOICES = {
    "1": "left",
    "ArrowLeft": "left",
    "2": "right",
    "ArrowRight": "right",
    "3": "tie",
    "4": "both_bad",
}


def export_judgments(base_url: str, user: User, slug: str = "demo") -> list[dict[str, Any]]:
    token, _ = Token.objects.get_or_create(user=user)
    request = urllib.request.Request(  # noqa: S310 - the live server's own http URL
        f"{base_url}/api/v1/projects/{slug}/export/?format=judgments",
        headers={"Authorization": f"Token {token.key}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        assert response.status == 200
        body = response.read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_it_judges_five_comparisons_by_keyboard_alone(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    bob: User,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(1, 5)))  # 4 x C(3,2) = 12
    base = live_server.url
    log_in(page, base, "ann")

    # From the home page to the project with Tab and Enter only.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()").startswith("Start judging"):
            break
    else:
        pytest.fail("Tab never reached the 'Start judging' link on the home page")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{base}/p/demo/"

    # A marker that a full page load would wipe out.
    page.evaluate("window.__sameDocument = 'kept'")
    seen: list[tuple[int, str, str, str]] = []  # (assignment, choice, left text, right text)
    for number, key in enumerate(["1", "ArrowRight", "3", "ArrowLeft", "4"], start=1):
        assignment = current_assignment(page)
        assert assignment is not None
        left, right = page.locator(".candidate .md").all_inner_texts()
        seen.append((int(assignment), KEY_CHOICES[key], left.strip(), right.strip()))
        after = press_and_wait_for_swap(page, key)
        assert after is not None and after != assignment
        assert page.evaluate("window.__sameDocument") == "kept", "a full page load happened"
        assert page.inner_text("[data-testid=judged]") == str(number)
        assert page.locator("section#comparison").count() == 1
    page_log.assert_clean(base)
    # Only the page itself, its static files and five htmx posts: no reloads.
    documents = [url for url in page_log.requests if url.rstrip("/").endswith("/p/demo")]
    assert len(documents) == 1, documents
    assert len([url for url in page_log.requests if "/p/demo/a/" in url]) == 5

    ann = User.objects.get(username="ann")
    judgments = Judgment.objects.filter(annotator=ann).order_by("id")
    assert judgments.count() == 5
    assignments = {a.pk: a for a in Assignment.objects.select_related("left", "right")}
    for judgment, (assignment_id, choice, left_text, right_text) in zip(
        judgments, seen, strict=True
    ):
        lease = assignments[assignment_id]
        assert judgment.assignment_id == assignment_id
        assert judgment.choice == choice
        # What the annotator saw on each side is what was recorded as that side.
        assert (lease.left.text, lease.right.text) == (left_text, right_text)
        assert judgment.duration_ms is not None and judgment.duration_ms >= 0

    rows = export_judgments(base, bob)
    pseudonym = Membership.objects.get(project=project, user=ann).pseudonym
    assert len(rows) == 5
    assert {row["annotator"] for row in rows} == {pseudonym}
    assert "ann" not in {row["annotator"] for row in rows}
    expected = []
    for assignment_id, choice, _, _ in seen:
        lease = assignments[assignment_id]
        chosen = {"left": lease.left, "right": lease.right}.get(choice)
        expected.append(
            (
                lease.comparison_id,
                lease.left.external_id,
                lease.right.external_id,
                choice,
                chosen.external_id if chosen else None,
            )
        )
    exported = [
        (row["comparison_id"], row["left_id"], row["right_id"], row["choice"], row["chosen_id"])
        for row in rows
    ]
    assert exported == expected


IMG = '<img src=x onerror="window.__xss=1;alert(1)">'
SCRIPT = "<script>window.__xss=1;alert(1)</script>"
MD_JS_LINK = "[click](javascript:alert(1)) [click2](javascript:window.__xss=1)"
IFRAME = '<iframe src="javascript:window.__xss=1;alert(1)"></iframe>'
SVG = '<svg onload="window.__xss=1;alert(1)">'
STYLE = "<style>body{display:none}</style>"
A_JS = '<a href="javascript:window.__xss=1;alert(1)">x</a>'
EXTERNAL_IMAGE = "![x](http://example.invalid/t.png)"
FENCED = '```html\n<script>window.__xss=1;alert(1)</script>\n<img src=x onerror="alert(1)">\n```'
FENCE_INFO = '```" onmouseover="window.__xss=1\ncode\n```'
TABLE = (
    "| payload | more |\n|---|---|\n"
    '| <img src=x onerror="window.__xss=1;alert(1)"> | <script>window.__xss=1</script> |'
)
SNEAKY_LINKS = (
    "[a](JaVaScRiPt:window.__xss=1) [b](&#106;avascript:window.__xss=1) "
    "[c](data:text/html,<script>alert(1)</script>) <javascript:window.__xss=1> "
    '[d](http://example.invalid "t\\" onmouseover=\\"window.__xss=1")'
)
HOSTILE_SYSTEM = f"You are evil. {SCRIPT} {IMG} {STYLE}"

HOSTILE_PROMPTS: dict[str, dict[str, Any]] = {
    "h-1": {
        "prompt": f"Please repeat: {IMG} {SCRIPT}",
        "candidates": [f"{MD_JS_LINK}\n\n{IFRAME}", f"{SVG}\n\n{STYLE}\n\n{A_JS}"],
        "visible": ["<img src=x onerror=", "<script>", "[click](javascript:alert(1))", "<iframe"],
    },
    "h-2": {
        "prompt": f"{EXTERNAL_IMAGE}\n\n{FENCED}",
        "candidates": [TABLE, SNEAKY_LINKS],
        "visible": ["<script>window.__xss=1;alert(1)</script>", "payload", "<script>"],
    },
    "h-3": {
        "prompt": [
            {"role": "system", "content": HOSTILE_SYSTEM},
            {"role": "user", "content": f"Hi {SVG}"},
            {"role": "assistant", "content": A_JS},
            {"role": "user", "content": f"Again: {IFRAME}"},
        ],
        "candidates": [FENCE_INFO, f"{STYLE}{SCRIPT}"],
        "visible": ["You are evil. <script>", "<svg onload=", "<style>body{display:none}</style>"],
    },
}

SAFETY_PROBE = """() => {
    const root = document.querySelector("#comparison");
    const elements = [root, ...root.querySelectorAll("*")];
    const handlers = [];
    const urls = [];
    for (const element of elements) {
        for (const attribute of element.attributes) {
            const name = attribute.name.toLowerCase();
            if (name.startsWith("on")) handlers.push(`${element.tagName} ${name}`);
            if (["href", "src", "action", "formaction", "xlink:href", "srcdoc"].includes(name)) {
                urls.push(attribute.value.replace(/[\\u0000-\\u0020]/g, "").toLowerCase());
            }
        }
    }
    return {
        xss: window.__xss === undefined ? null : String(window.__xss),
        handlers,
        jsUrls: urls.filter(url => url.startsWith("javascript:") || url.startsWith("data:")),
        scripts: root.querySelectorAll("script").length,
        frames: document.querySelectorAll("iframe, frame, object, embed").length,
        media: root.querySelectorAll("img, svg, image, video, audio, source, style, link").length,
        pageScripts: [...document.scripts].map(
            script => script.src ? new URL(script.src).origin : "inline"),
        bodyDisplay: getComputedStyle(document.body).display,
        text: root.textContent,
    };
}"""


def assert_nothing_ran(page: Any, page_log: PageLog, base_url: str) -> dict[str, Any]:
    probe = page.evaluate(SAFETY_PROBE)
    assert page_log.dialogs == [], f"a dialog opened: {page_log.dialogs}"
    assert probe["xss"] is None, "a payload ran (window.__xss is set)"
    assert probe["handlers"] == [], f"event handler attributes: {probe['handlers']}"
    assert probe["jsUrls"] == [], f"javascript:/data: URLs: {probe['jsUrls']}"
    assert probe["scripts"] == 0
    assert probe["frames"] == 0
    assert probe["media"] == 0, "an image, svg or style element got through"
    assert set(probe["pageScripts"]) == {base_url}, probe["pageScripts"]
    assert probe["bodyDisplay"] != "none"
    assert page_log.foreign_requests(base_url) == []
    assert page_log.page_errors == []
    assert page_log.real_console_errors() == []  # a CSP violation would be reported here
    return probe


def test_it_runs_no_script_from_hostile_candidates(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(
        *(
            {
                "id": pid,
                "prompt": spec["prompt"],
                "candidates": [
                    {"id": f"c{i}", "text": text, "model": f"m{i}"}
                    for i, text in enumerate(spec["candidates"], start=1)
                ],
            }
            for pid, spec in HOSTILE_PROMPTS.items()
        )
    )
    base = live_server.url
    log_in(page, base, "ann")
    shown: list[str] = []
    for key in ["2", "1", "ArrowRight"]:
        page.goto(f"{base}/p/demo/")
        assignment = Assignment.objects.select_related("comparison__prompt").get(
            pk=int(current_assignment(page) or 0)
        )
        pid = assignment.comparison.prompt.external_id
        shown.append(pid)
        # Open collapsed system prompts, so that their text is visible too.
        for summary in page.locator("#comparison details > summary").all():
            summary.click()
        probe = assert_nothing_ran(page, page_log, base)
        visible = page.inner_text("#comparison")
        for literal in HOSTILE_PROMPTS[pid]["visible"]:
            assert literal in probe["text"], f"{literal!r} is not shown as text for {pid}"
            assert literal in visible, f"{literal!r} is not visible for {pid}"
        page.evaluate("window.__sameDocument = 'kept'")
        after = press_and_wait_for_swap(page, key)
        assert page.evaluate("window.__sameDocument") == "kept"
        assert after != str(assignment.pk)
        # The swapped-in card went through htmx: check it as well.
        assert_nothing_ran(page, page_log, base)

    assert sorted(shown) == sorted(HOSTILE_PROMPTS)
    assert page.get_by_role("heading", name="Nothing left to judge").is_visible()
    assert not any("example.invalid" in url for url in page_log.requests)
    ann = User.objects.get(username="ann")
    assert list(
        Judgment.objects.filter(annotator=ann).order_by("id").values_list("choice", flat=True)
    ) == ["right", "left", "right"]


# A URL the held route matches, that the page itself never asks for.
PROBE = "/p/demo/a/probe/"


def test_it_takes_one_judgment_while_a_post_is_in_flight(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(prompt_line("p-1", n=3))
    base = live_server.url
    log_in(page, base, "ann")
    held: list[Any] = []
    page.route("**/p/demo/a/*/", lambda route: held.append(route))  # hold the POST
    page.goto(f"{base}/p/demo/")
    before = current_assignment(page)
    page.keyboard.press("1")
    # In flight: the form is busy, or (with a prefetched next comparison) that one is shown,
    # read-only, until the answer comes.
    page.wait_for_function(
        "() => document.querySelector('.htmx-request, section[aria-busy=true]') !== null"
    )
    wait_for_held(page, held)
    assert len(held) == 1
    disabled = page.eval_on_selector_all(
        ".choices button", "buttons => buttons.map(b => b.disabled)"
    )
    assert disabled and all(disabled), f"some choices stay clickable in flight: {disabled}"
    page.keyboard.press("2")  # an impatient second key: ignored
    page.keyboard.press("ArrowRight")
    # A second request, were one sent, is held before a probe the page sends after it.
    send_probe(page, PROBE)
    wait_for_held(page, held, 2)
    assert [route.request.url.endswith(PROBE) for route in held] == [False, True]
    held.pop().fulfill(status=204)
    held[0].continue_()
    page.wait_for_function(
        """before => {
            const section = document.querySelector('section#comparison');
            return section.dataset.assignment !== before
                && section.getAttribute('aria-busy') !== 'true';
        }""",
        arg=before,
        timeout=WAIT_MS,
    )
    # A queued second request would go out after the swap: before this probe.
    send_probe(page, PROBE)
    wait_for_held(page, held, 2)
    assert held[1].request.url.endswith(PROBE), held[1].request.url
    held[1].fulfill(status=204)
    judged = [url for url in page_log.requests if "/p/demo/a/" in url and PROBE not in url]
    assert len(judged) == 1
    assert list(
        Judgment.objects.filter(annotator__username="ann").values_list("choice", flat=True)
    ) == ["left"]
    page_log.assert_clean(base)


def test_it_works_without_javascript(
    live_server: Any,
    make_page: Callable[..., Any],
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(*(prompt_line(f"p-{i}", n=2) for i in range(1, 4)))
    page = make_page(java_script_enabled=False)
    base = live_server.url
    log_in(page, base, "ann")
    page.goto(f"{base}/p/demo/")
    before = current_assignment(page)
    assert before
    with page.expect_navigation():
        page.get_by_role("button", name="Left is better").click()
    assert page.url == f"{base}/p/demo/"  # redirected after the POST
    after = current_assignment(page)
    assert after and after != before
    assert page.inner_text("[data-testid=judged]") == "1"
    page_log.assert_clean(base)

    judgment = Judgment.objects.get(annotator__username="ann")
    assert judgment.assignment_id == int(before)
    assert judgment.choice == "left"
    assert judgment.chosen_id == judgment.left_id
    assert judgment.duration_ms is None  # no script, no timer


def test_it_sends_a_strict_content_security_policy(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(prompt_line("p-1"))
    base = live_server.url
    log_in(page, base, "ann")
    response = page.goto(f"{base}/p/demo/")
    assert response is not None and response.ok
    header = response.headers.get("content-security-policy")
    assert header, "no Content-Security-Policy header on the judging page"
    directives = {}
    for directive in header.split(";"):
        name, *values = directive.split()
        directives[name.lower()] = values
    assert directives["script-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert "'unsafe-inline'" not in header
    assert "'unsafe-eval'" not in header
    # htmx and the keyboard script work under that policy: no violation was reported.
    assert current_assignment(page)
    page_log.assert_clean(base)


def test_it_says_plainly_when_nothing_is_left(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    import_rows(prompt_line("only", n=2))  # one comparison
    base = live_server.url
    log_in(page, base, "ann")
    page.goto(f"{base}/p/demo/")
    assert press_and_wait_for_swap(page, "1") is None
    done = page.get_by_role("heading", name="Nothing left to judge")
    done.wait_for(state="visible", timeout=WAIT_MS)
    assert page.locator("form.judge").count() == 0
    assert page.inner_text("[data-testid=judged]") == "1"
    page.reload()
    assert page.get_by_role("heading", name="Nothing left to judge").is_visible()
    page_log.assert_clean(base)
    assert Judgment.objects.filter(annotator__username="ann").count() == 1


SCREENSHOT_PROMPT = (
    "How do I count how often each word appears in a text file with Python? "
    "Show the code and the result for `sample.txt`."
)
SCREENSHOT_LEFT = """Use `collections.Counter`:

```python
from collections import Counter
from pathlib import Path

words = Path("sample.txt").read_text().lower().split()
for word, count in Counter(words).most_common(3):
    print(f"{word:<6} {count}")
```

| word | count |
|------|------:|
| the  | 12 |
| and  | 7 |
| of   | 5 |

`most_common(3)` returns the three most frequent words, **most frequent first**."""
SCREENSHOT_RIGHT = """You can loop over the words and keep a dictionary:

```python
counts = {}
with open("sample.txt") as f:
    for word in f.read().split():
        counts[word] = counts.get(word, 0) + 1
print(sorted(counts.items(), key=lambda kv: -kv[1])[:3])
```

This prints `[('the', 12), ('and', 7), ('of', 5)]`. Note that it is case-sensitive:
*The* and *the* are counted apart."""


def test_it_takes_the_screenshots_for_the_docs(
    tmp_path: Any,
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
) -> None:
    project.name = "Python answers, round 1"
    project.save(update_fields=["name"])
    import_rows(
        {
            "id": "py-1",
            "prompt": SCREENSHOT_PROMPT,
            "candidates": [
                {"id": "a", "text": SCREENSHOT_LEFT, "model": "model-a"},
                {"id": "b", "text": SCREENSHOT_RIGHT, "model": "model-b"},
            ],
        },
        *(prompt_line(f"p-{i}", n=3) for i in range(1, 5)),
    )
    # The queue orders by a random rank: put the pictured comparison first.
    Comparison.objects.filter(prompt__external_id="py-1").update(rank=0)
    # The pictures in docs/ are refreshed only on request (SCREENSHOTS=1), so that a test run
    # never rewrites tracked files; otherwise they go to a temporary folder.
    target = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path
    base = live_server.url
    log_in(page, base, "ann")
    target.mkdir(exist_ok=True)
    page.goto(f"{base}/p/demo/")
    # Always show the same side-by-side, whichever side the coin put each candidate on.
    assignment = Assignment.objects.get(pk=int(current_assignment(page) or 0))
    if assignment.left.external_id != "a":
        Assignment.objects.filter(pk=assignment.pk).update(
            left=assignment.right, right=assignment.left
        )
        page.reload()
    assert re.search(r"Counter", page.inner_text(".candidate:first-of-type"))
    # docs/annotate.png shows a conversation now: test_keyboard_journey takes it.
    page.screenshot(path=str(tmp_path / "annotate.png"))
    assert (tmp_path / "annotate.png").stat().st_size > 10_000
    page_log.assert_clean(base)
