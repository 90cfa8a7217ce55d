"""The judging page against hostile texts: server time per corpus item, and the import's cost.

    .venv/bin/python bench/render.py                  # every item, 30 page loads each
    .venv/bin/python bench/render.py --requests 100   # more samples
    .venv/bin/python bench/render.py --only brackets  # items whose name contains "brackets"

It creates a throwaway PostgreSQL database, migrates it, and, in one `manage.py shell` (DEBUG
off, Redis on, as deployed), for each item of the corpus: a project of its own with one
annotator, and an import through `batch_import` of two prompts, each pairing the hostile text
with an ordinary answer (the `prompt` item puts it in the prompt, the `conversation` item in
every message of a conversation), so that the page carries the card and the prefetched next card,
both with the hostile text. Then it loads the judging page as that annotator through Django's
test client (the whole middleware stack, the queue's SQL, the templates), `--requests` times
after 3 warm-ups, and as many times the HTMX card (what a judge request renders). The time is
the server's: from the request entering Django to the response complete.

Every text is at most IMPORT_MAX_TEXT_CHARS (200,000) characters, so every item is an accepted
import. It prints the machine, then per item: its size, the import's time with its rendering
(the work of the task an import sends on its commit, run here before the page is loaded: every
text is rendered once), whether the page formats it or shows it as written (and why), the response's
size, and p50/p95/max of the page and of the card. Last, the target: judging-page p95 under
50 ms for every item.
"""

import sys
from pathlib import Path

# As bench/export.py: keep bench/queue.py from shadowing the standard library's `queue`.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402

import common  # noqa: E402

LIMIT = 200_000
TARGET_MS = 50.0


def _fill(unit: str, limit: int = LIMIT) -> str:
    return unit * (limit // len(unit))


def _nested_list(depth: int) -> str:
    return "\n".join(f"{'  ' * level}- level {level}" for level in range(depth)) + "\n\nThe end."


def _prose(limit: int = LIMIT) -> str:
    words = (
        "the annotator reads both responses carefully and decides which one answers the "
        "question better, weighing accuracy, clarity and tone before choosing. "
    )
    return _fill(words, limit)


def _realistic() -> str:
    """A long, ordinary Markdown answer: headings, lists, a table, code, links."""
    section = (
        "## Step {i}\n\nFirst, **install** the package and read [the guide](https://example.com/"
        "{i}).\n\n- a point with `inline code`\n- another point, *emphasised*\n  - nested\n\n"
        "| option | meaning |\n|---|---|\n| `-v` | verbose |\n| `-q` | quiet |\n\n"
        "```python\ndef step_{i}(x):\n    return [v * 2 for v in x if v > {i}]\n```\n\n"
        "> A quoted remark about step {i}.\n\n"
    )
    return "".join(section.format(i=i) for i in range(120))


def corpus() -> dict[str, str]:
    """name -> a hostile (or, last, an ordinary) text of at most LIMIT characters."""
    table_rows = "| cell | cell | cell | cell |\n"
    wide_row = "|" + "x|" * 400 + "\n"
    return {
        "brackets [": _fill("["),
        "stars *": _fill("*"),
        "underscores _": _fill("_"),
        "quotes >": _fill(">"),
        "backticks `": _fill("`"),
        "emphasis a*": _fill("a*"),
        "emphasis *a": _fill("*a "),
        "unclosed links [a](": _fill("[a]("),
        "unclosed images ![": _fill("!["),
        "bracket lookahead [- ": _fill("[- "),
        "nested brackets [[]]": "[" * (LIMIT // 2) + "]" * (LIMIT // 2),
        "reference definitions": _fill("[x]: /u\n"),
        "entities &": _fill("&amp;"),
        "lines a\\n": _fill("a\n"),
        "huge table": "| a | b | c | d |\n|---|---|---|---|\n" + _fill(table_rows, LIMIT - 40),
        "wide table": "|" + "h|" * 400 + "\n|" + "-|" * 400 + "\n" + _fill(wide_row, LIMIT - 2000),
        "deep list (60 levels)": _nested_list(60),
        "deep quotes (1000)": "> " * 1000 + "the quoted end",
        "deep ordered lists": _fill("1. "),
        "under the markup bound a*": "a*" * 19_999,
        "under the lookahead bound": "[a " * 2_000,
        "plain text 200 KB": _prose(),
        "realistic Markdown": _realistic()[:LIMIT],
        "prompt": "",  # the prompt holds the hostile text ("brackets [")
        "conversation": "",  # 20 messages, each 10,000 '['
    }


def lines_for(name: str, text: str) -> list[dict[str, object]]:
    ordinary = "A short, ordinary answer with **one** bold word."
    rows = []
    for index in range(2):
        prompt: object = "Which response is better?"
        hostile = text
        if name == "prompt":
            prompt, hostile = _fill("["), "An answer."
        elif name == "conversation":
            prompt = [
                {"role": "user" if turn % 2 == 0 else "assistant", "content": "[" * 10_000}
                for turn in range(20)
            ]
            hostile = "An answer."
        rows.append(
            {
                "id": f"p{index}",
                "prompt": prompt,
                "candidates": [
                    {"id": "hostile", "text": hostile},
                    {"id": "ordinary", "text": ordinary},
                ],
            }
        )
    return rows


MEASURE = """
import io, json, time
from django.contrib.auth.models import User
from django.test import Client
from apps.batches.services import batch_import
from apps.judging.markdown import render_bounded
from apps.judging.rendering import renderings_for_batch
from apps.projects.services import membership_add, project_create

spec = json.loads(SPEC)
results = []
for index, item in enumerate(spec["items"]):
    data = open(item["path"], "rb").read()
    project = project_create(slug=f"render-{index}", name=item["name"], overlap=3)
    user = User.objects.create_user(f"reader-{index}")
    membership_add(project=project, user=user, role="annotator")
    started = time.perf_counter()
    batch = batch_import(
        project=project, source=io.BytesIO(data), size=len(data), background=False
    )
    # What the rendering task, sent on the import's commit, does in a worker: the texts are
    # rendered once, before the page is loaded (the import and its rendering, timed together).
    renderings_for_batch(batch_id=batch.pk, seconds=float("inf"))
    imported = time.perf_counter() - started
    client = Client(HTTP_HOST="127.0.0.1", raise_request_exception=True)
    client.force_login(user)
    url = f"/p/{project.slug}/"
    times = {"page": [], "card": []}
    size = 0
    for kind, headers in (("page", {}), ("card", {"HTTP_HX_REQUEST": "true"})):
        for attempt in range(3 + spec["requests"]):
            started = time.perf_counter()
            response = client.get(url, **headers)
            body = response.content
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, (item["name"], response.status_code)
            if attempt >= 3:
                times[kind].append(elapsed)
            size = max(size, len(body))
    page = body.decode()
    row = json.loads(data.splitlines()[0])
    prompt = row["prompt"]
    if isinstance(prompt, list):
        sample = prompt[0]["content"]
    elif item["name"] == "prompt":
        sample = prompt
    else:
        sample = row["candidates"][0]["text"]
    shown = render_bounded(sample).plain_because
    results.append({
        "name": item["name"], "chars": len(sample), "import_s": imported, "bytes": size,
        "as_written": "Shown as written" in page, "because": shown, "times": times,
    })
print(MARK + json.dumps(results))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--only", default="")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    common.bound_runtime(args.timeout)
    common.print_machine()
    items = {name: text for name, text in corpus().items() if args.only in name}
    with tempfile.TemporaryDirectory(prefix="annotate_bench_render_") as folder:
        specs = []
        for index, (name, text) in enumerate(items.items()):
            path = Path(folder) / f"{index}.jsonl"
            rows = lines_for(name, text)
            path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
            specs.append({"name": name, "path": str(path)})
        with common.temporary_database("annotate_bench_render", keep=args.keep_db) as database:
            env = common.production_env(database)
            env["STATIC_ROOT"] = str(Path(folder) / "static")
            common.migrate(env)
            common.collectstatic(env)
            spec = {"items": specs, "requests": args.requests}
            code = f"SPEC = {json.dumps(spec)!r}\nMARK = 'BENCH-JSON '\n{MEASURE}"
            out = common.manage(["shell", "-c", code], env, timeout=args.timeout).stdout
    results = next(
        json.loads(line[len("BENCH-JSON ") :])
        for line in out.splitlines()
        if line.startswith("BENCH-JSON ")
    )
    print(
        f"\n{args.requests} page loads and {args.requests} HTMX cards per item (after 3 warm-ups)"
    )
    header = (
        f"{'item':<28} {'chars':>8} {'import':>8} {'shown':<10} {'bytes':>9}  "
        f"{'page p50':>9} {'p95':>7} {'max':>7}  {'card p50':>9} {'p95':>7} {'max':>7}"
    )
    print(header)
    worst = 0.0
    for result in results:
        page = sorted(result["times"]["page"])
        card = sorted(result["times"]["card"])
        p = [common.percentile(page, q) * 1000 for q in (50, 95)] + [page[-1] * 1000]
        c = [common.percentile(card, q) * 1000 for q in (50, 95)] + [card[-1] * 1000]
        worst = max(worst, p[1], c[1])
        shown = "as written" if result["as_written"] else "formatted"
        print(
            f"{result['name']:<28} {result['chars']:>8,} {result['import_s']:>7.2f}s "
            f"{shown:<10} {result['bytes']:>9,}  {p[0]:>7.1f}ms {p[1]:>5.1f}ms {p[2]:>5.1f}ms"
            f"  {c[0]:>7.1f}ms {c[1]:>5.1f}ms {c[2]:>5.1f}ms"
        )
        if result["because"]:
            print(f"{'':<28}   as written because {result['because']}")
    verdict = "met" if worst < TARGET_MS else "NOT met"
    print(
        f"\ntarget: judging-page p95 < {TARGET_MS:.0f} ms for every item: "
        f"worst p95 {worst:.1f} ms, {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
