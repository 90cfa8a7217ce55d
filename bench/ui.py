"""The judging page in a real browser: key press to the next comparison painted, and its bytes.

    .venv/bin/python bench/ui.py [--judgments 50] [--warmup 5] [--workers 2]

Creates a throwaway PostgreSQL database, migrates it, creates a project and an annotator with a
password, imports a JSON Lines file of prompts (two 300-800 character Markdown responses each,
one comparison per prompt) with `manage.py import_batch`, collects the static files and serves
the app with gunicorn (DEBUG=false: whitenoise serves the hashed static files with long cache
headers). Debian's Chromium, driven by Playwright, logs in through the form, opens the judging
page and judges with the keyboard: --warmup judgments first (not counted), then --judgments
measured ones. It prints the machine, the first page loads (cold cache), the time from the key
press to the next comparison painted (taken inside the page), and the requests and bytes per
judgment (from Chromium's DevTools Network domain), beside the targets.
"""

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's `queue`, which psycopg imports, and Python
# puts this script's folder first on sys.path: move the folder to the end (as queue.py does).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import common  # noqa: E402
import psycopg  # noqa: E402

SLUG = "bench-ui"
USERNAME = "bench-annotator-001"  # the name common.setup_project gives its first annotator
PASSWORD = "bench-ui-password"  # noqa: S105 - a throwaway account in a throwaway database
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
VIEWPORT = {"width": 1280, "height": 800}
CARD_WAIT_MS = 10_000  # longer than this without a new card: the page stopped advancing
PAUSE_MS = 250  # between judgments: htmx settles, late network events arrive

# Targets on this machine (the issue).
TARGET_P95_MS = 150.0
TARGET_BYTES = 30_000  # "30 KB", read as the stricter 30,000 B
TARGET_REQUESTS = 2.0

# Runs in every document before the page's own scripts (CDP addScriptToEvaluateOnNewDocument,
# which CSP does not apply to). The keydown listener is the first one registered, in the capture
# phase on window, so it sees the key before annotate.js does.
PAGE_PROBE = """
(() => {
  const bench = (window.__bench = { key: null, result: null });
  window.addEventListener("keydown", (event) => {
    bench.key = { at: performance.now(), stamp: event.timeStamp, key: event.key };
  }, { capture: true });
  performance.setResourceTimingBufferSize(10000);

  // Resolves once a #comparison with another data-assignment than `old` is in the document and
  // the frame that shows it has run its requestAnimationFrame callbacks (`frameAt`); `paintedAt`
  // is a task queued from that callback, so it runs after that frame's paint.
  bench.arm = (old, timeoutMs) => {
    bench.key = null;
    performance.clearResourceTimings();
    bench.result = new Promise((resolve, reject) => {
      let timer = null;
      const observer = new MutationObserver(() => {
        const card = document.getElementById("comparison");
        if (!card || card.dataset.assignment === old) return;
        const seenAt = performance.now();
        observer.disconnect();
        clearTimeout(timer);
        requestAnimationFrame(() => {
          const frameAt = performance.now();
          const channel = new MessageChannel();
          channel.port1.onmessage = () => {
            const paintedAt = performance.now();
            const xhr = performance.getEntriesByType("resource").filter(
              (e) => e.initiatorType === "xmlhttprequest" || e.initiatorType === "fetch");
            const last = xhr.length ? xhr[xhr.length - 1] : null;
            resolve({
              key: bench.key, seenAt, frameAt, paintedAt,
              assignment: card.dataset.assignment || null,
              cardText: card.innerText.length, cardHtml: card.outerHTML.length,
              xhr: last && {
                name: last.name, startTime: last.startTime, requestStart: last.requestStart,
                responseStart: last.responseStart, responseEnd: last.responseEnd,
                transferSize: last.transferSize, encodedBodySize: last.encodedBodySize,
                decodedBodySize: last.decodedBodySize,
              },
              xhrCount: xhr.length,
            });
          };
          channel.port2.postMessage(null);
        });
      });
      observer.observe(document.documentElement, {
        childList: true, subtree: true, attributes: true, attributeFilter: ["data-assignment"],
      });
      timer = setTimeout(() => {
        observer.disconnect();
        const card = document.getElementById("comparison");
        reject(new Error("no new comparison within " + timeoutMs + " ms; the card says: " +
          (card ? card.innerText.slice(0, 300) : "(no #comparison)")));
      }, timeoutMs);
    });
    bench.result.catch(() => {});  // awaited later; not an unhandled rejection meanwhile
    return true;
  };
})();
"""


# --- the network, as Chromium's DevTools protocol reports it -----------------------------------


@dataclass
class Exchange:
    """One request Chromium made (or served from its cache), and what crossed the wire."""

    phase: str
    method: str
    url: str
    sent_body: int = 0
    received: int = 0  # Network.loadingFinished encodedDataLength: headers + body as received
    received_headers: int = 0  # the status line and headers, Network.responseReceivedExtraInfo
    request_headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    status: int = 0
    from_cache: bool = False
    finished: bool = False
    failed: str = ""
    started: float = 0.0  # CDP timestamps, seconds on the browser's monotonic clock
    ended: float = 0.0

    @property
    def to_server(self) -> bool:
        return not self.from_cache

    @property
    def sent_headers(self) -> int:
        """The request line, the raw headers Chromium sent and the blank line (HTTP/1.1)."""
        if not self.request_headers:
            return 0  # served from the cache: nothing sent
        target = urlsplit(self.url)
        line = f"{self.method} {target.path or '/'}" + (f"?{target.query}" if target.query else "")
        headers = "".join(f"{k}: {v}\r\n" for k, v in self.request_headers.items())
        return len(f"{line} HTTP/1.1\r\n{headers}\r\n".encode())

    @property
    def sent(self) -> int:
        return self.sent_headers + self.sent_body

    @property
    def total(self) -> int:
        return self.sent + self.received

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


@dataclass
class NetworkLog:
    phase: str = ""
    exchanges: dict[str, Exchange] = field(default_factory=dict)

    def attach(self, cdp: Any) -> None:
        cdp.on("Network.requestWillBeSent", self._will_be_sent)
        cdp.on("Network.requestWillBeSentExtraInfo", self._extra_info)
        cdp.on("Network.requestServedFromCache", self._from_cache)
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.responseReceivedExtraInfo", self._response_extra_info)
        cdp.on("Network.loadingFinished", self._finished)
        cdp.on("Network.loadingFailed", self._failed)
        cdp.send("Network.enable")

    def _get(self, request_id: str) -> Exchange:
        # ExtraInfo may come before requestWillBeSent: keep what it says until the request shows.
        return self.exchanges.setdefault(request_id, Exchange(self.phase, "", ""))

    def _will_be_sent(self, params: dict[str, Any]) -> None:
        request = params["request"]
        if not request["url"].startswith(("http://", "https://")):
            return  # data: URLs never leave the browser
        if "redirectResponse" in params:
            # The same requestId is reused by the redirect's target: close the 3xx as its own.
            old = self.exchanges.pop(params["requestId"], None)
            if old is not None:
                redirect = params["redirectResponse"]
                old.status = int(redirect.get("status", 0))
                old.received = int(redirect.get("encodedDataLength", 0))
                old.finished = True
                self.exchanges[f"{params['requestId']}#{len(self.exchanges)}"] = old
        exchange = self._get(params["requestId"])
        exchange.phase = self.phase
        exchange.method = request["method"]
        exchange.url = request["url"]
        exchange.started = float(params.get("timestamp", 0.0))
        exchange.sent_body = sum(
            len(_b64decode(entry.get("bytes", ""))) for entry in request.get("postDataEntries", [])
        ) or len(request.get("postData", "").encode())

    def _extra_info(self, params: dict[str, Any]) -> None:
        exchange = self._get(params["requestId"])
        # It may come before requestWillBeSent: the request line is built when it is read.
        exchange.request_headers = dict(params.get("headers", {}))

    def _from_cache(self, params: dict[str, Any]) -> None:
        self._get(params["requestId"]).from_cache = True

    def _response(self, params: dict[str, Any]) -> None:
        exchange = self._get(params["requestId"])
        response = params["response"]
        exchange.status = int(response.get("status", 0))
        if response.get("fromDiskCache") or response.get("fromPrefetchCache"):
            exchange.from_cache = True

    def _response_extra_info(self, params: dict[str, Any]) -> None:
        exchange = self._get(params["requestId"])
        exchange.response_headers = dict(params.get("headers", {}))
        exchange.received_headers = len(params.get("headersText", "").encode())

    def _finished(self, params: dict[str, Any]) -> None:
        exchange = self.exchanges.get(params["requestId"])
        if exchange is not None:
            exchange.received = int(params.get("encodedDataLength", 0))
            exchange.ended = float(params.get("timestamp", 0.0))
            exchange.finished = True

    def _failed(self, params: dict[str, Any]) -> None:
        exchange = self.exchanges.get(params["requestId"])
        if exchange is not None:
            exchange.failed = str(params.get("errorText", "failed"))
            exchange.finished = True

    def in_phase(self, phase: str) -> list[Exchange]:
        return [e for e in self.exchanges.values() if e.phase == phase and e.url]


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text) if text else b""


def describe_load(name: str, exchanges: list[Exchange]) -> list[str]:
    server = [e for e in exchanges if e.to_server]
    cached = [e for e in exchanges if e.from_cache]
    sent, received = sum(e.sent for e in server), sum(e.received for e in server)
    lines = [
        f"{name}: {len(server)} request{'s' if len(server) != 1 else ''} to the server, "
        f"{sent + received:,} B (sent {sent:,} B, received {received:,} B)"
        + (f"; {len(cached)} served from the browser's cache" if cached else "")
    ]
    for e in exchanges:
        where = "cache" if e.from_cache else f"{e.status or '-'}"
        lines.append(
            f"    {e.method:<4} {e.path:<58} {where:>5}  sent {e.sent:>6,} B  received "
            f"{e.received:>7,} B" + (f"  FAILED {e.failed}" if e.failed else "")
        )
    return lines


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Sample:
    key: str
    frame_ms: float  # key press -> rAF of the frame that shows the new card
    painted_ms: float  # key press -> a task after that frame
    seen_ms: float  # key press -> MutationObserver saw the new card
    to_request_ms: float  # key press -> the XHR started (Resource Timing)
    server_ms: float  # request start -> first byte of the response
    download_ms: float  # first byte -> last byte
    after_response_ms: float  # last byte -> rAF: htmx swap, style, layout
    input_delay_ms: float  # event.timeStamp -> the capture listener ran
    body_bytes: int  # the response body, decoded (Resource Timing)
    card_text: int  # characters of the new card's innerText


def seed(env: dict[str, str], folder: Path, comparisons: int, seed_value: int) -> str:
    path = folder / "prompts.jsonl"
    size = common.write_prompts_jsonl(path, comparisons, 2, seed=seed_value)
    said = common.manage(["import_batch", SLUG, str(path)], env).stdout.strip()
    return f"{comparisons} prompts x 2 responses ({common.human_bytes(size)}): {said}"


def static_sizes(root: Path) -> list[str]:
    manifest = json.loads((root / "staticfiles.json").read_text())["paths"]
    lines = []
    for name in ("css/annotate.css", "js/htmx.min.js", "js/annotate.js"):
        hashed = root / manifest[name]
        sizes = [f"{hashed.stat().st_size:,} B"]
        for suffix in (".gz", ".br"):
            packed = hashed.with_name(hashed.name + suffix)
            if packed.exists():
                sizes.append(f"{suffix[1:]} {packed.stat().st_size:,} B")
        lines.append(f"{name} ({', '.join(sizes)})")
    return lines


def judge_loop(
    page: Any, net: NetworkLog, count: int, phase: str, start_index: int, allow_tie: bool
) -> list[tuple[Sample, str]]:
    out = []
    for i in range(count):
        n = start_index + i
        key = "3" if allow_tie and n % 7 == 6 else ("1" if n % 2 == 0 else "2")
        old = page.get_attribute("#comparison", "data-assignment")
        if not old:
            raise common.BenchError(f"no comparison to judge before judgment {n + 1}")
        net.phase = f"{phase}{i}"
        page.evaluate("([old, ms]) => window.__bench.arm(old, ms)", [old, CARD_WAIT_MS])
        page.keyboard.press(key)
        try:
            r = page.evaluate("window.__bench.result")
        except Exception as exc:  # Playwright's Error: the promise was rejected
            raise common.BenchError(f"judgment {n + 1} (key {key}): {exc}") from None
        if r["key"] is None:
            raise common.BenchError(f"judgment {n + 1}: the page saw no keydown")
        if not r["assignment"]:
            raise common.BenchError(f"judgment {n + 1}: the queue ran out (no next comparison)")
        k = r["key"]["at"]
        x = r["xhr"] or {}
        nan = float("nan")
        out.append(
            (
                Sample(
                    key=key,
                    frame_ms=r["frameAt"] - k,
                    painted_ms=r["paintedAt"] - k,
                    seen_ms=r["seenAt"] - k,
                    to_request_ms=x.get("startTime", nan) - k,
                    server_ms=x.get("responseStart", nan) - x.get("requestStart", nan),
                    download_ms=x.get("responseEnd", nan) - x.get("responseStart", nan),
                    after_response_ms=r["frameAt"] - x.get("responseEnd", nan),
                    input_delay_ms=k - r["key"]["stamp"],
                    body_bytes=int(x.get("decodedBodySize", 0)),
                    card_text=int(r["cardText"]),
                ),
                net.phase,
            )
        )
        page.wait_for_timeout(PAUSE_MS)
    return out


def ms_line(name: str, values: list[float]) -> str:
    v = sorted(x for x in values if x == x)
    if not v:
        return f"{name:<34} (not measured)"
    return (
        f"{name:<34} p50 {common.percentile(v, 50):7.1f} ms  p95 {common.percentile(v, 95):7.1f} ms"
        f"  min {v[0]:7.1f} ms  max {v[-1]:7.1f} ms"
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def run(args: argparse.Namespace) -> int:
    from playwright.sync_api import sync_playwright

    comparisons = max(60, args.warmup + args.judgments + 10)
    server: common.Gunicorn | None = None
    with (
        tempfile.TemporaryDirectory(prefix="annotate_bench_ui_") as folder,
        common.temporary_database(prefix="annotate_bench_ui", keep=args.keep_db) as db,
    ):
        static_root = Path(folder) / "static"
        env = common.production_env(db)
        # Plain HTTP on loopback: cookies without the Secure flag, as behind no TLS proxy.
        env.update(STATIC_ROOT=str(static_root), SECURE_COOKIES="false")
        migrate_s = common.migrate(env)
        setup = common.setup_project(env, SLUG, overlap=3, annotators=1, password=PASSWORD)
        with psycopg.connect(db) as conn:
            row = conn.execute(
                "SELECT allow_tie FROM projects_project WHERE id = %s", (setup["project"],)
            ).fetchone()
        allow_tie = bool(row and row[0])
        print(
            f"\nsetup: migrate {migrate_s:.1f} s; project {SLUG!r} (overlap 3, ties "
            f"{'allowed' if allow_tie else 'not allowed'}), annotator {USERNAME} with a password"
        )
        print(f"  imported {seed(env, Path(folder), comparisons, args.seed)}")
        collect_s = common.collectstatic(env)
        print(f"  collectstatic into a temporary STATIC_ROOT in {collect_s:.1f} s:")
        for line in static_sizes(static_root):
            print(f"    {line}")
        sys.stdout.flush()

        try:
            server = common.Gunicorn(env, workers=args.workers, extra=["--no-control-socket"])
            server.start()
            base = f"http://127.0.0.1:{server.port}"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                try:
                    status = measure(browser, base, server, db, args, allow_tie)
                finally:
                    browser.close()
        finally:
            if server is not None:
                server.stop()
    return status


def measure(
    browser: Any,
    base: str,
    server: common.Gunicorn,
    db: str,
    args: argparse.Namespace,
    allow_tie: bool,
) -> int:
    print(
        f"server: {server.description} on {base}, DEBUG=false, whitenoise (hashed, compressed "
        f"static files), REDIS_URL set, PostgreSQL; browser: Chromium {browser.version} "
        f"headless, {VIEWPORT['width']}x{VIEWPORT['height']}, Playwright"
    )
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(CARD_WAIT_MS + 5_000)
    context.add_init_script(PAGE_PROBE)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None,
    )
    playwright_requests: dict[str, list[Any]] = {}
    net = NetworkLog()
    page.on("request", lambda r: playwright_requests.setdefault(net.phase, []).append(r))
    net.attach(context.new_cdp_session(page))

    # First loads, cold cache: the login page, logging in, the judging page.
    net.phase = "login-page"
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    net.phase = "login"
    with page.expect_navigation():
        page.press("#id_password", "Enter")
    if urlsplit(page.url).path.startswith("/accounts/login"):
        raise common.BenchError("the login form did not log in")
    net.phase = "annotate-page"
    page.goto(f"{base}/p/{SLUG}/")
    nav = page.evaluate(
        """() => new Promise((resolve) => {
          const n = performance.getEntriesByType("navigation")[0];
          const done = (fcp) => resolve({ load: n.loadEventEnd, dcl: n.domContentLoadedEventEnd,
                                         fcp });
          new PerformanceObserver((list) => {
            const fcp = list.getEntriesByName("first-contentful-paint")[0];
            if (fcp) done(fcp.startTime);
          }).observe({ type: "paint", buffered: true });
          setTimeout(() => done(null), 2000);
        })"""
    )
    page.wait_for_timeout(PAUSE_MS)
    print("\nfirst page loads (cold cache at the login page; not counted)")
    for phase, name in (
        ("login-page", "GET /accounts/login/"),
        ("login", "log in (POST, redirect, /)"),
        ("annotate-page", f"first GET /p/{SLUG}/"),
    ):
        for line in describe_load(name, net.in_phase(phase)):
            print(f"  {line}")
    fcp = f"{nav['fcp']:.0f} ms" if nav["fcp"] is not None else "n/a"
    print(
        f"  /p/{SLUG}/: first contentful paint {fcp}, DOMContentLoaded {nav['dcl']:.0f} ms, "
        f"load {nav['load']:.0f} ms after navigation start"
    )

    judge_loop(page, net, args.warmup, "warmup", 0, allow_tie)
    page.wait_for_timeout(PAUSE_MS)
    warm = [e for e in net.exchanges.values() if e.phase.startswith("warmup")]
    print(
        f"warm-up: {args.warmup} judgments (not counted), {len(warm)} requests, "
        f"{sum(e.total for e in warm):,} B"
    )
    sys.stdout.flush()

    meter = common.CpuMeter()

    def groups() -> dict[str, list[int]]:
        web = set(server.pids())
        mine = descendants(os.getpid()) - web
        return {
            "gunicorn": sorted(web),
            "postgres": common.backend_pids(db),
            "browser": sorted(mine),
            "client": [os.getpid()],
        }

    load_before = common.machine_busy_now(1.0)
    started = time.monotonic()
    meter.begin(groups())
    measured = judge_loop(page, net, args.judgments, "judge", args.warmup, allow_tie)
    busy, used = meter.end(groups())
    elapsed = time.monotonic() - started
    page.wait_for_timeout(PAUSE_MS)  # the last late events

    samples = [s for s, _ in measured]
    per: list[list[Exchange]] = [net.in_phase(phase) for _, phase in measured]
    server_side = [[e for e in exs if e.to_server] for exs in per]
    requests = [len(exs) for exs in server_side]
    cached = sum(len(exs) - len(srv) for exs, srv in zip(per, server_side, strict=True))
    totals = [sum(e.total for e in exs) for exs in server_side]
    sent_h = sum(e.sent_headers for exs in server_side for e in exs)
    sent_b = sum(e.sent_body for exs in server_side for e in exs)
    received = sum(e.received for exs in server_side for e in exs)
    kinds = Counter(
        f"{e.method} {'/'.join('<id>' if p.isdigit() else p for p in e.path.split('/'))} {e.status}"
        for exs in server_side
        for e in exs
    )
    unfinished = [e for exs in per for e in exs if not e.finished or e.failed]
    pw_count = sum(len(playwright_requests.get(phase, [])) for _, phase in measured)
    n = len(samples)

    print(f"\nresults: {n} judgments with the keyboard, after {args.warmup} of warm-up")
    print("  " + ms_line("key -> next comparison painted", [s.frame_ms for s in samples]))
    print(
        "    (performance.now() in the page: the keydown listener, capture phase, to the "
        "requestAnimationFrame\n     callback of the frame after a MutationObserver saw the "
        "new #comparison)"
    )
    print("  " + ms_line("key -> after that frame's paint", [s.painted_ms for s in samples]))
    print("  where the time goes:")
    print("    " + ms_line("key -> new card in the DOM", [s.seen_ms for s in samples]))
    print("    " + ms_line("key -> XHR start (htmx)", [s.to_request_ms for s in samples]))
    print("    " + ms_line("request -> first byte (server)", [s.server_ms for s in samples]))
    print("    " + ms_line("first -> last byte", [s.download_ms for s in samples]))
    print(
        "    "
        + ms_line("last byte -> frame (swap, render)", [s.after_response_ms for s in samples])
    )
    print("    " + ms_line("input delay (event -> listener)", [s.input_delay_ms for s in samples]))
    keys = Counter(s.key for s in samples)
    print(f"  keys pressed: {', '.join(f'{k} x{v}' for k, v in sorted(keys.items()))}")
    mean_bytes = sum(totals) / n
    print(
        f"  bytes per judgment: mean {mean_bytes:,.0f} B ({mean_bytes / 1024:.1f} KiB), min "
        f"{min(totals):,}, max {max(totals):,}: sent {sent_h / n:,.0f} B of request line and "
        f"headers + {sent_b / n:,.0f} B of body, received {received / n:,.0f} B (headers + body)"
    )
    print(
        "    (received: Network.loadingFinished encodedDataLength, the bytes read from the "
        "socket; sent: the\n     request line and the raw headers of "
        "Network.requestWillBeSentExtraInfo, plus the post data)"
    )
    print(
        f"  requests per judgment: mean {sum(requests) / n:.2f}, max {max(requests)} (to the "
        f"server; {cached} served from the browser's cache; Playwright's request events: "
        f"{pw_count}):"
    )
    for kind, count in kinds.most_common():
        print(f"    {count:>4} x {kind}")
    last = server_side[-1][-1] if server_side[-1] else None
    if last is not None:
        print_detail(last, samples[-1], playwright_requests.get(measured[-1][1], []))
    if unfinished:
        print(f"  WARNING: {len(unfinished)} requests failed or did not finish")
    machine = busy * (os.cpu_count() or 1)
    cores = {k: v / elapsed for k, v in used.items()}
    other = machine - sum(cores.values())
    print(
        f"  cpu, cores busy out of {os.cpu_count()} over the {elapsed:.1f} s loop (with "
        f"{PAUSE_MS} ms pauses): machine {machine:.2f} = gunicorn {cores['gunicorn']:.2f} + "
        f"postgres {cores['postgres']:.2f} + browser {cores['browser']:.2f} + client "
        f"{cores['client']:.2f} + other {other:.2f}; {load_before:.2f} busy just before"
    )
    if other > 0.25:
        print("  WARNING: other processes used the CPU during the run; figures are noisy")
    for error in errors:
        print(f"  {error}")

    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM judging_judgment j JOIN auth_user u ON u.id = j.annotator_id "
            "WHERE u.username = %s",
            (USERNAME,),
        ).fetchone()
    stored = int(row[0]) if row else 0
    expected = args.warmup + args.judgments
    print(f"  judgments stored: {stored} (expected {expected})")

    p95 = common.percentile(sorted(s.frame_ms for s in samples), 95)
    mean_requests = sum(requests) / n
    print("\ntargets (this machine)")
    print(
        f"  key -> painted p95: {p95:.1f} ms (target <= {TARGET_P95_MS:g} ms): "
        f"{verdict(p95 <= TARGET_P95_MS)}"
    )
    print(
        f"  bytes per judgment: {mean_bytes:,.0f} B (target <= {TARGET_BYTES:,} B): "
        f"{verdict(mean_bytes <= TARGET_BYTES)}"
    )
    print(
        f"  requests per judgment: {mean_requests:.2f} (target <= {TARGET_REQUESTS:g}): "
        f"{verdict(mean_requests <= TARGET_REQUESTS)}"
    )
    context.close()
    if stored != expected:
        raise common.BenchError(f"{stored} judgments stored, expected {expected}")
    return 0


def header_sizes(headers: dict[str, str]) -> str:
    """Each header's bytes, largest first; a Set-Cookie says which cookie it sets."""
    sizes = []
    for name, value in headers.items():
        label = name
        if name.lower() == "set-cookie":
            label += " (" + ", ".join(c.split("=", 1)[0] for c in value.split("\n")) + ")"
        sizes.append((len(f"{name}: {value}\r\n"), label))
    return ", ".join(f"{label} {size}" for size, label in sorted(sizes, reverse=True))


def print_detail(e: Exchange, sample: Sample, pw_requests: list[Any]) -> None:
    """The last judgment's exchange, header by header: what the bytes are made of."""
    body = e.received - e.received_headers
    print(f"  the last judgment in detail: {e.method} {e.path}")
    print(
        f"    sent {e.sent:,} B: request line and headers {e.sent_headers:,} B "
        f"({header_sizes(e.request_headers)}), body {e.sent_body:,} B (the form)"
    )
    print(
        f"    received {e.received:,} B: status line and headers {e.received_headers:,} B "
        f"({header_sizes(e.response_headers)}), body {body:,} B"
        f" ({e.response_headers.get('Content-Encoding', 'not compressed')}; "
        f"{sample.body_bytes:,} B decoded, of which the card's visible text is "
        f"{sample.card_text:,} characters)"
    )
    for request in pw_requests[-1:]:
        sizes = request.sizes()
        print(
            "    Playwright's request.sizes() for it: request headers "
            f"{sizes['requestHeadersSize']:,} B + body {sizes['requestBodySize']:,} B, response "
            f"headers {sizes['responseHeadersSize']:,} B + body {sizes['responseBodySize']:,} B"
        )


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in common.child_pids(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judgments", type=int, default=50, help="measured (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="judgments before (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600, help="stop the whole run after")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    if args.judgments < 1 or args.warmup < 0 or args.workers < 1:
        parser.error("--judgments and --workers must be at least 1, --warmup at least 0")
    return args


def main() -> int:
    from playwright.sync_api import Error as PlaywrightError

    args = parse_args()
    if not Path(CHROMIUM).is_file():
        print(f"FAILED: no Chromium at {CHROMIUM} (install Debian's chromium)", file=sys.stderr)
        return 1
    common.bound_runtime(args.timeout)
    common.print_machine()
    try:
        return run(args)
    except (common.BenchError, PlaywrightError) as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
