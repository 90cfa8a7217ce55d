"""The quality benchmark: planted annotators whose truth is known, judging through the app.

    .venv/bin/python bench/quality.py                      # 5 seeds x 3 policies (~3 min)
    .venv/bin/python bench/quality.py --quick              # 2 seeds, fewer prompts (~40 s)
    .venv/bin/python bench/quality.py --seeds 1 2 --prompts 300 --budget 700 --policies random
    .venv/bin/python bench/quality.py --quick --triads     # three responses a prompt: triads
    .venv/bin/python bench/quality.py --quick --audit-rate 0.1  # agreement on an audit sample
    .venv/bin/python bench/quality.py --quick --honeypot-rate 0.05  # generated gold, gold rule

Creates a throwaway PostgreSQL database, migrates it, creates a lead and the annotators with DRF
tokens, and per seed and policy a project (overlap 3) whose batch is imported through the API
(`POST .../batches/`, the documented JSON Lines): each prompt has two responses by two of the
models, each response naming its `model`. The models have known Bradley-Terry strengths. The
annotators judge through the HTTP API (next, then submit with `?next=1`) in turn until the
budget of judgments is spent: honest ones choose by the true Bradley-Terry model (ties when the
two are close), a random clicker, an always-left one and a left-biased one (75% left when
unsure). The client sees left and right only, and maps the lease's candidate ids to models to
simulate the truth. Then it reads `/stats/`, the `trl` export under `aggregate=majority` and
`aggregate=reliability`, and the dashboard's flags (`project_figures`, the function the
dashboard renders, run in a `manage.py shell` on the bench's database), and prints per policy:
flag recall per planted kind and precision, Kendall tau of the leaderboard against the truth
and its 95% intervals' coverage, the truly-right share of exported pairs per aggregation at
equal row count, and the agreement and alpha as reported.

With `--honeypot-rate` the projects also get generated gold items (apps/batches/honeypots.py: a
response against a degraded copy of it, made at import), shown at `--gold-rate`, and the gold
rule (`--gold-min-accuracy` over `--gold-min-answers`) pauses whoever fails them. The client
knows a honeypot by its degraded side, whose id is none of the imported ones: honest and
left-biased annotators judge it as a pair DEGRADED log-strength units apart (the degraded side
loses 98% of the time), the random clicker flips a coin, the always-left one answers left. Its
answers are judgments and count toward the budget, the same for every policy.
"""

import sys
from pathlib import Path

# As bench/export.py: keep bench/queue.py from shadowing the standard library's `queue`.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import http.client  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import common  # noqa: E402
from curves import mean_curve, reach_line, tau_reach, write_curves  # noqa: E402

# bench/queue.py's keep-alive client, loaded by path as bench/dashboard.py does (the name
# `queue` is the standard library's).
_queue_spec = importlib.util.spec_from_file_location("bench_queue", _HERE / "queue.py")
assert _queue_spec is not None and _queue_spec.loader is not None
bench_queue = importlib.util.module_from_spec(_queue_spec)
_queue_spec.loader.exec_module(bench_queue)
Connection = bench_queue.Connection

OVERLAP = 3
POLICIES = ("random", "uncertain_first", "breadth_first")
# Eight models, log-strengths evenly spaced over 3 natural-log units (about 520 Elo points).
MODELS = {f"model-{i + 1}": -1.5 + 3 * i / 7 for i in range(8)}
ELO = 400 / math.log(10)
# The planted annotators: kind -> how many.
KINDS = {"honest": 6, "random": 1, "always_left": 1, "left_biased": 1}
SPAMMERS = ("random", "always_left", "left_biased")
TIE_MARGIN = 0.5  # honest: |difference of log-strengths| below it (neighbours), a tie 1 in 3
UNSURE = 1.0  # left-biased: below this difference (a BT probability under 0.73), 75% left
# A honeypot's degraded side, in log-strength units below its source (a BT probability of 0.982
# for the source): obvious to whoever reads, so no tie and no left bias.
DEGRADED = 4.0


@dataclass
class Annotator:
    username: str
    kind: str
    token: str
    conn: Any = None
    lease: dict[str, Any] | None = None
    done: bool = False


@dataclass
class Run:
    policy: str
    seed: int
    slug: str
    judgments: int = 0
    probes: int = 0  # consistency probes answered (not judgments: outside the budget)
    honeypots: int = 0  # honeypots answered (judgments, within the budget)
    paused: list[str] = field(default_factory=list)  # stopped by the gold rule, in order
    repeat_rate: float = 0.0
    wall: float = 0.0
    truth: dict[str, str] = field(default_factory=dict)  # candidate id -> model
    tau_at: dict[int, float] = field(default_factory=dict)  # judgments -> leaderboard's tau
    crowd_tau_at: dict[int, float] = field(default_factory=dict)  # the weighted leaderboard's
    doubt: Any = None  # the last refresh's model-pair doubt (uncertain_first only)
    doubt_written: int = 0  # comparisons whose doubt the refreshes wrote, over the run


def choose(kind: str, left: float, right: float, rng: random.Random) -> str:
    """The planted annotator's answer for log-strengths `left` and `right`."""
    diff = left - right
    if kind == "random":
        return rng.choice(("left", "right"))
    if kind == "always_left":
        return "left"
    if kind == "left_biased" and abs(diff) < UNSURE:
        return "left" if rng.random() < 0.75 else "right"
    if abs(diff) < TIE_MARGIN and rng.random() < 1 / 3:
        return "tie"
    return "left" if rng.random() < 1 / (1 + math.exp(-diff)) else "right"


def import_file(seed: int, prompts: int, responses: int = 2) -> tuple[str, dict[str, str]]:
    """A JSON Lines file of `prompts` prompts, `responses` responses each (a comparison per
    pair of them) by distinct models drawn at random; the candidate ids are random, so only the
    bench's map says whose is whose."""
    rng = random.Random(seed)
    names = list(MODELS)
    truth: dict[str, str] = {}
    lines = []
    for i in range(prompts):
        candidates = []
        for model in rng.sample(names, responses):
            cid = uuid.UUID(int=rng.getrandbits(128)).hex[:12]
            truth[cid] = model
            text = f"Response {cid}: " + " ".join(rng.choice(common._WORDS) for _ in range(40))
            candidates.append({"id": cid, "text": text, "model": model})
        lines.append(
            json.dumps({"id": f"q-{i:05d}", "prompt": f"Question {i}?", "candidates": candidates})
        )
    return "\n".join(lines) + "\n", truth


_SETUP = """
import json
from django.contrib.auth.models import User
from django.db import transaction
from rest_framework.authtoken.models import Token
from apps.projects.services import membership_add, project_create

spec = json.loads(SPEC)
with transaction.atomic():
    users = {}
    for name in [spec["lead"], *spec["annotators"]]:
        user = User(username=name)
        user.set_unusable_password()
        user.save()
        users[name] = user
    for slug, policy in spec["projects"]:
        project = project_create(
            slug=slug,
            name=slug,
            overlap=spec["overlap"],
            policy=policy,
            stop_confidence=spec["stop_confidence"] if policy == "uncertain_first" else None,
            audit_rate=spec["audit_rate"],
            repeat_rate=spec["repeat_rate"],
            repeat_after=spec["repeat_after"],
            honeypot_rate=spec["honeypot_rate"],
            gold_rate=spec["gold_rate"],
            gold_min_accuracy=spec["gold_min_accuracy"],
            gold_min_answers=spec["gold_min_answers"],
        )
        membership_add(project=project, user=users[spec["lead"]], role="lead")
        for name in spec["annotators"]:
            membership_add(project=project, user=users[name], role="annotator")
    tokens = {name: Token.objects.create(user=user).key for name, user in users.items()}
print(MARK + json.dumps(tokens))
"""

_FLAGS = """
import json
from apps.dashboard.figures import project_figures
from apps.projects.models import Project

out = {}
for slug in json.loads(SLUGS):
    figures = project_figures(Project.objects.get(slug=slug))
    out[slug] = {
        a["username"]: {
            "flags": [f["flag"] for f in a["flags"]],
            "reasons": [f"{f['flag']}: {f['reason']}" for f in a["flags"]],
            "bias_test": {
                k: (a.get("left_bias_test") or {}).get(k)
                for k in ("left_share", "expected", "n", "p_value", "p_holm")
            },
            "agree": a["agreement_with_others"],
            "left": a["position_bias"]["left_share"],
            "triads": (a.get("transitivity") or {}).get("triads", 0),
            "cycles": (a.get("transitivity") or {}).get("cycles", 0),
            "probes": (a.get("repeat") or {}).get("probes", 0),
            "consistent": (a.get("repeat") or {}).get("consistent", 0),
            "gold_answered": a.get("gold_answered") or 0,
            "gold_correct": round((a.get("gold_accuracy") or 0) * (a.get("gold_answered") or 0)),
        }
        for a in figures["annotators"]
    }
print(MARK + json.dumps(out))
"""

MARK = "BENCH-JSON "

# The beat's dashboard refresh (dashboard.services.figures_refresh, which also writes the
# uncertain_first queue's model-pair doubt), run on request by one long-lived Django process:
# a project's slug in, its pair-doubt summary out.
_REFRESHER = """
import json, sys
from apps.dashboard.services import figures_refresh
from apps.projects.models import Project

for line in sys.stdin:
    figures = figures_refresh(Project.objects.get(slug=line.strip()))
    print(MARK + json.dumps(None if figures is None else figures.get("pair_doubt")), flush=True)
"""


class Refresher:
    """What a worker's beat does every DASHBOARD_REFRESH_SECONDS, at a set pace in judgments
    instead (the bench judges far faster than people do: at 60 judgments/s a 30 s beat would
    come once a run), so that every policy and seed sees the same cadence."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [common.PYTHON, str(common.MANAGE), "shell", "-c", f"MARK = {MARK!r}\n{_REFRESHER}"],
            cwd=common.REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def refresh(self, slug: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(slug + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK) :])
        raise common.BenchError("the refresher exited")

    def __enter__(self) -> "Refresher":
        return self

    def __exit__(self, *exc: object) -> None:
        """Ended before the database is dropped: it holds a connection to it."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def shell(code: str, env: dict[str, str], **names: str) -> Any:
    script = "".join(f"{key} = {value!r}\n" for key, value in names.items())
    out = common.manage(["shell", "-c", f"{script}MARK = {MARK!r}\n{code}"], env).stdout
    for line in out.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    raise common.BenchError(f"the shell printed no result:\n{out[-2000:]}")


def http_get(port: int, token: str, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("GET", path, headers={"Authorization": f"Token {token}", "Accept": "*/*"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise common.BenchError(f"GET {path}: {response.status} {body[:300]!r}")
        return body
    finally:
        conn.close()


def import_batch(port: int, token: str, slug: str, body: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/jsonl"}
    conn.request("POST", f"/api/v1/projects/{slug}/batches/", body=body.encode(), headers=headers)
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    if response.status not in (201, 202):
        raise common.BenchError(f"import into {slug}: {response.status} {answer}")
    lead = Connection(port, token)
    while answer.get("status") not in ("active",):  # a background import: wait for it
        if answer.get("status") in ("failed", "cancelled"):
            raise common.BenchError(f"import into {slug}: {answer}")
        time.sleep(0.5)
        answer = json.loads(lead.request("GET", f"/api/v1/batches/{answer['id']}/")[1])
    lead.close()


def judge(
    run: Run,
    people: list[Annotator],
    port: int,
    budget: int,
    checkpoint: Callable[[int], None],
    checkpoints: set[int],
) -> None:
    """The annotators in turn, one request a judgment, until the budget is spent or no one
    gets work. The client sees left and right; the truth comes from the candidate ids.
    `checkpoint(n)` runs after the n-th judgment for each n in `checkpoints` (not timed)."""
    rng = random.Random(run.seed * 1_000 + POLICIES.index(run.policy))
    # With a repeat rate the client takes consistency probes (kind "probe") as they come; their
    # answers are not judgments and do not count toward the budget.
    probes = "&probes=1" if run.repeat_rate else ""
    for person in people:
        person.conn, person.done = Connection(port, person.token), False
        status, body = person.conn.request(
            "POST", f"/api/v1/projects/{run.slug}/assignments/next/?{probes[1:]}"
        )
        person.lease = json.loads(body) if status == 200 else None
        person.done = person.lease is None
    started = time.perf_counter()
    while run.judgments < budget and not all(p.done for p in people):
        for person in people:
            if person.done or run.judgments >= budget:
                continue
            lease = person.lease
            assert lease is not None
            left, right = sides(run.truth, lease)
            payload = {
                "choice": choose(person.kind, left, right, rng),
                "idempotency_key": uuid.uuid4().hex,
                # The same pace for everyone: the flags must come from the votes alone.
                "duration_ms": int(rng.lognormvariate(math.log(20_000), 0.5)),
            }
            if lease.get("kind") == "probe":
                url = f"/api/v1/projects/{run.slug}/probes/{lease['id']}/judgment/"
            else:
                url = f"/api/v1/assignments/{lease['id']}/judgment/"
            status, body = person.conn.request("POST", f"{url}?next=1{probes}", payload)
            if status not in (200, 201):
                raise common.BenchError(f"submit: {status} {body[:300]!r}")
            if lease.get("kind") == "probe":
                run.probes += 1
                answer = json.loads(body)
                person.lease = answer["next"]
                person.done = person.lease is None
                continue
            run.judgments += 1
            run.honeypots += is_honeypot(run.truth, lease)
            if run.judgments in checkpoints:
                paused = time.perf_counter()
                checkpoint(run.judgments)
                started += time.perf_counter() - paused
            answer = json.loads(body)
            person.lease = answer["next"]
            if person.lease is None:
                if answer["next_reason"] == "blocked":  # the gold rule paused them
                    run.paused.append(person.username)
                elif answer["next_reason"] != "none_left":
                    raise common.BenchError(
                        f"next: {answer['next_reason']} {answer['next_detail']}"
                    )
                person.done = True
    run.wall = time.perf_counter() - started
    for person in people:
        person.conn.close()


def is_honeypot(truth: dict[str, str], lease: dict[str, Any]) -> bool:
    """A honeypot's degraded side has an id the import did not hold."""
    return lease["left"]["id"] not in truth or lease["right"]["id"] not in truth


def sides(truth: dict[str, str], lease: dict[str, Any]) -> tuple[float, float]:
    """The log-strengths of a lease's left and right: each side's model's, or for a honeypot's
    degraded side (an id the import did not hold), its source's less DEGRADED."""
    ids = lease["left"]["id"], lease["right"]["id"]
    known = [MODELS[truth[i]] if i in truth else None for i in ids]
    if known[0] is None and known[1] is None:
        raise common.BenchError(f"neither side of {lease['id']} was imported: {ids}")
    left, right = known
    if left is None:
        assert right is not None
        return right - DEGRADED, right
    if right is None:
        return left, left - DEGRADED
    return left, right


def kendall_tau(first: list[float], second: list[float]) -> float:
    """Kendall's tau-b of two lists of scores over the same items."""
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(first)):
        for j in range(i + 1, len(first)):
            a, b = first[i] - first[j], second[i] - second[j]
            if a == 0 and b == 0:
                continue
            if a == 0:
                ties_a += 1
            elif b == 0:
                ties_b += 1
            elif (a > 0) == (b > 0):
                concordant += 1
            else:
                discordant += 1
    n = concordant + discordant
    return (concordant - discordant) / math.sqrt((n + ties_a) * (n + ties_b) or 1)


def leaderboard_quality(
    stats: dict[str, Any], board_name: str = "bradley_terry"
) -> tuple[float, int, int]:
    """(tau against the truth, models whose 95% interval holds their true score, models) of a
    /stats/ leaderboard: "bradley_terry" (every vote alike) or "crowd_leaderboard" (the crowd
    model's, reliability-weighted); both on the same scale."""
    board = {m["model"]: m for m in stats["models"][board_name]["models"]}
    names = [name for name in MODELS if name in board]
    mean = statistics.fmean(MODELS[name] for name in names)  # the fit's scores average 1000
    true = {name: 1000 + ELO * (MODELS[name] - mean) for name in names}
    tau = kendall_tau([true[n] for n in names], [board[n]["score"] for n in names])
    covered = sum(board[n]["ci95"][0] <= true[n] <= board[n]["ci95"][1] for n in names)
    return tau, covered, len(names)


def truly_right(rows: list[dict[str, Any]]) -> float:
    right = sum(MODELS[r["chosen_model"]] > MODELS[r["rejected_model"]] for r in rows)
    return right / len(rows) if rows else float("nan")


def pairs_quality(port: int, token: str, slug: str) -> dict[str, float]:
    """The truly-right share of `trl` rows under each aggregation, on all rows and on the same
    number of rows: each aggregation's most confident ones (majority: the vote share of the
    winner, then the votes; reliability: `label_confidence`)."""
    path = f"/api/v1/projects/{slug}/export/?format=trl&aggregate="
    majority = [json.loads(x) for x in http_get(port, token, path + "majority").splitlines()]
    reliable = [json.loads(x) for x in http_get(port, token, path + "reliability").splitlines()]
    majority.sort(key=lambda r: (-r["agreement"], -r["n_annotators"], r["comparison_id"]))
    reliable.sort(key=lambda r: (-r["label_confidence"], r["comparison_id"]))
    n = min(len(majority), len(reliable))
    return {
        "majority_rows": len(majority),
        "reliability_rows": len(reliable),
        "majority_all": truly_right(majority),
        "reliability_all": truly_right(reliable),
        "equal_rows": n,
        "majority_equal": truly_right(majority[:n]),
        "reliability_equal": truly_right(reliable[:n]),
    }


def people_of(tokens: dict[str, str]) -> list[Annotator]:
    people = []
    for kind, count in KINDS.items():
        for i in range(count):
            name = f"{kind}-{i + 1}"
            people.append(Annotator(name, kind, tokens[name]))
    return people


def mean_of(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{statistics.fmean(present):.2f}" if present else "n/a"


def per_kind(results: list[dict[str, Any]], keys: tuple[str, str], heading: str) -> None:
    """Per planted kind, the sums of two counts of the dashboard's (a total and the part of it
    counted, e.g. triads and cycles), with the share; nothing when no one has any."""
    total, part = keys
    sums = {
        kind: [
            (p.get(total, 0), p.get(part, 0))
            for r in results
            for name, p in r["people"].items()
            if name.startswith(kind)
        ]
        for kind in KINDS
    }
    if not any(n for found in sums.values() for n, _ in found):
        return
    print(f"  {heading}")
    for kind, found in sums.items():
        n, k = sum(t for t, _ in found), sum(c for _, c in found)
        print(f"    {kind:<12} {n:>6} {k:>10}" + (f"  ({k / n:.0%})" if n else ""))


def report(policy: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """One policy's tables, over its seeds; returns its summary row."""
    judged = sum(r["judgments"] for r in results)
    wall = sum(r["wall"] for r in results)
    print(f"\npolicy {policy}: {len(results)} seed(s), {judged:,} judgments, {judged / wall:.0f}/s")
    print(
        "  the dashboard's flags:\n"
        "    kind          planted  flagged  recall  agreement w/ others  left share  flags fired"
    )
    hits: dict[str, int] = {}
    for kind in KINDS:
        people = [p for r in results for name, p in r["people"].items() if name.startswith(kind)]
        hits[kind] = sum(bool(p["flags"]) for p in people)
        fired: dict[str, int] = defaultdict(int)
        for person in people:
            for flag in person["flags"]:
                fired[flag] += 1
        recall = "-" if kind == "honest" else f"{hits[kind] / len(people):.0%}"
        shown = ", ".join(f"{f} x{n}" for f, n in sorted(fired.items())) or "-"
        agree = mean_of([p["agree"] for p in people])
        left = mean_of([p["left"] for p in people])
        print(
            f"    {kind:<12} {len(people):>8} {hits[kind]:>8} {recall:>7}  {agree:>19}  "
            f"{left:>10}  {shown}"
        )
    per_kind(
        results,
        ("triads", "cycles"),
        "transitivity (triads of one prompt's three responses): kind  triads  cycles",
    )
    per_kind(
        results,
        ("probes", "consistent"),
        "consistency probes (answered, same answer both times): kind  probes  consistent",
    )
    per_kind(
        results,
        ("gold_answered", "gold_correct"),
        "gold items (the generated honeypots) answered and answered right: kind  gold  right",
    )
    paused: dict[str, int] = defaultdict(int)
    for r in results:
        for name in r["paused"]:
            paused[name.rsplit("-", 1)[0]] += 1
    if any(r["honeypot_rate"] for r in results):
        shown = ", ".join(f"{kind} x{n}" for kind, n in sorted(paused.items())) or "no one"
        print(f"  paused by the gold rule before the budget was spent: {shown}")
    wrong = [
        (r["seed"], name, p)
        for r in results
        for name, p in sorted(r["people"].items())
        if bool(p["flags"]) == name.startswith("honest")
    ]
    if wrong:
        print(
            "  wrongly flagged or missed (seed, annotator: the flags' reasons, or the left-bias "
            "test):"
        )
    for seed, name, person in wrong:
        why = "; ".join(person["reasons"]) or f"not flagged; left-bias test {person['bias_test']}"
        print(f"    {seed:>4}  {name}: {why}")
    spam = sum(hits[k] for k in SPAMMERS)
    flagged = spam + hits["honest"]
    precision = f"{spam / flagged:.0%}" if flagged else "n/a (nothing flagged)"
    print(f"  flag precision (spammers among the flagged annotators): {precision}")
    print(
        "  seed  tau     covered  rows maj/rel  right maj  right rel  (all rows: maj  rel)"
        "  agreement w/o ties  with ties  alpha"
    )
    for r in results:
        q, a = r["pairs"], r["agreement"]
        alpha = a["krippendorff_alpha_nominal"]
        print(
            f"  {r['seed']:>4}  {r['tau']:+.3f}  {r['covered']:>3}/{r['models']:<3}  "
            f"{q['equal_rows']:>5} eq.   {q['majority_equal']:>9.1%}  "
            f"{q['reliability_equal']:>9.1%}"
            f"  ({q['majority_rows']:>4} {q['majority_all']:.1%}  {q['reliability_rows']:>4} "
            f"{q['reliability_all']:.1%})  {a['pairwise']['without_ties']['agreement']!s:>18}  "
            f"{a['pairwise']['with_ties']['agreement']!s:>9}  "
            f"{'n/a' if alpha is None else f'{alpha:.3f}'}"
        )
    alphas = [r["agreement"]["krippendorff_alpha_nominal"] for r in results]
    audits = [r["audit"] for r in results if r["audit"]]
    for r in results:
        if r["audit"]:
            a = r["audit"]
            print(
                f"  {r['seed']:>4}  audit sample: {a['comparisons']} comparisons, "
                f"{a['judgments']} judgments; agreement w/o ties "
                f"{a['pairwise']['without_ties']['agreement']}, with ties "
                f"{a['pairwise']['with_ties']['agreement']}, alpha "
                f"{a['krippendorff_alpha_nominal']}"
            )
    return {
        "policy": policy,
        "tau": statistics.fmean(r["tau"] for r in results),
        "tau_min": min(r["tau"] for r in results),
        "coverage": sum(r["covered"] for r in results) / sum(r["models"] for r in results),
        "crowd_tau": statistics.fmean(r["crowd_tau"] for r in results),
        "crowd_coverage": sum(r["crowd_covered"] for r in results)
        / sum(r["models"] for r in results),
        "majority": statistics.fmean(r["pairs"]["majority_equal"] for r in results),
        "reliability": statistics.fmean(r["pairs"]["reliability_equal"] for r in results),
        "recall": {k: hits[k] / sum(KINDS[k] for _ in results) for k in SPAMMERS},
        "honest_flagged": hits["honest"],
        "honest": KINDS["honest"] * len(results),
        "alpha": mean_of(alphas),
        "audit_alpha": mean_of([a["krippendorff_alpha_nominal"] for a in audits])
        if audits
        else "-",
        "audit_judgments": sum(a["judgments"] for a in audits),
        "tau_at": mean_curve([r["tau_at"] for r in results]),
        "crowd_tau_at": mean_curve([r["crowd_tau_at"] for r in results]),
    }


def summary(rows: list[dict[str, Any]]) -> None:
    print(
        "\nsummary (means over seeds; the random policy's alpha is the uniform reference)\n"
        "  policy           BT tau (min)     BT cover  right maj  right rel  rel-maj  "
        "recall random/left/biased  honest flagged  alpha  audit alpha (judgments)"
    )
    for s in rows:
        recall = "/".join(f"{s['recall'][k]:.0%}" for k in SPAMMERS)
        print(
            f"  {s['policy']:<16} {s['tau']:+.3f} ({s['tau_min']:+.3f})  {s['coverage']:>8.0%}  "
            f"{s['majority']:>9.1%}  {s['reliability']:>9.1%}  "
            f"{(s['reliability'] - s['majority']) * 100:>+6.1f}  {recall:>25}  "
            f"{s['honest_flagged']:>7}/{s['honest']:<6}  {s['alpha']}  {s['audit_alpha']} "
            f"({s['audit_judgments']})"
        )
    print(
        "  the reliability-weighted leaderboard (models.crowd_leaderboard), against the truth:\n"
        "  policy           tau     coverage"
    )
    for s in rows:
        print(f"  {s['policy']:<16} {s['crowd_tau']:+.3f}  {s['crowd_coverage']:>8.0%}")
    for key, name in (("tau_at", "Bradley-Terry"), ("crowd_tau_at", "reliability-weighted")):
        print(f"  the {name} leaderboard's tau (mean over seeds) after n judgments:")
        for s in rows:
            curve = ", ".join(f"{n}: {tau:+.3f}" for n, tau in s[key].items())
            print(f"  {s['policy']:<16} {curve}")
    if any(s["policy"] == "random" for s in rows):
        random_row = next(s for s in rows if s["policy"] == "random")
        for key, name in (("tau_at", "Bradley-Terry"), ("crowd_tau_at", "reliability-weighted")):
            budget, target = max(random_row[key].items())
            print(
                f"  judgments for the {name} leaderboard's mean tau to reach the random "
                f"policy's final {target:+.3f} (checkpoints only; '-' not within the budget):"
            )
            own = next(n for n, tau in random_row[key].items() if tau >= target - 1e-9)
            for s in rows:
                first = next((n for n, tau in s[key].items() if tau >= target - 1e-9), None)
                saved = (
                    f"  ({1 - first / budget:.0%} fewer than random's budget, "
                    f"{1 - first / own:.0%} fewer than random's first reach at {own})"
                    if first
                    else ""
                )
                print(f"  {s['policy']:<16} {first or '-'}{saved}")
            # Where tau saturates (8 well separated models order perfectly in the end) the final
            # figure says little: the same question at each of random's checkpoints below it.
            print(
                f"  the judgments at which the {name} leaderboard's mean tau first reaches the "
                "random policy's mean tau after n (checkpoints below random's best):"
            )
            for s in rows:
                if s["policy"] != "random":
                    line = reach_line(tau_reach(random_row[key], s[key]))
                    print(f"  {s['policy']:<16} {line}")


def reach(results: list[dict[str, Any]], policies: list[str]) -> None:
    """What adaptive stopping saved where it was on."""
    for r in results:
        stopping = r["stopping"]
        if stopping["margin"]:
            print(
                f"  {r['slug']}: stopping at {stopping['confidence']} (a lead of "
                f"{stopping['margin']}): {stopping['stopped_early']} comparisons stopped early, "
                f"{stopping['judgments_saved']} judgments saved; {r['judgments']} judgments"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--prompts", type=int, default=400, help="comparisons per project")
    parser.add_argument("--budget", type=int, default=1000, help="judgments per project")
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument(
        "--checkpoints",
        type=float,
        nargs="+",
        default=[0.25, 0.5, 0.75],
        help="also read the leaderboard's tau after these fractions of the budget",
    )
    parser.add_argument(
        "--stop-confidence",
        type=float,
        default=None,
        help="adaptive stopping for the uncertain_first projects (0.5-0.999; default off)",
    )
    parser.add_argument(
        "--audit-rate",
        type=float,
        default=0.0,
        help="every project's audit sample (0-1; default 0, none): its agreement is printed "
        "beside the whole sample's, against the random policy's as the uniform reference",
    )
    parser.add_argument(
        "--repeat-rate",
        type=float,
        default=0.0,
        help="every project's consistency-probe rate (0-0.5; default 0): the client then asks "
        "for probes (probes=1) and answers them as any comparison, outside the budget",
    )
    parser.add_argument(
        "--repeat-after", type=int, default=5, help="the projects' repeat_after (default 5)"
    )
    parser.add_argument(
        "--honeypot-rate",
        type=float,
        default=0.0,
        help="every project's honeypot_rate (0-1; default 0, none): generated gold items, "
        "shown at --gold-rate under the gold rule",
    )
    parser.add_argument(
        "--gold-rate",
        type=float,
        default=0.1,
        help="with honeypots, the share of assignments that are gold items (default 0.1)",
    )
    parser.add_argument(
        "--gold-min-accuracy",
        type=float,
        default=0.8,
        help="with honeypots, the gold rule: below this gold accuracy an annotator is paused "
        "(default 0.8)",
    )
    parser.add_argument(
        "--gold-min-answers",
        type=int,
        default=20,
        help="with honeypots, the gold answers before the rule applies (default 20: at 10, an "
        "honest annotator right 98%% of the time is paused with chance 0.2%%, at 20 0.006%%)",
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=3.0,
        help="the models' log-strengths span this many natural-log units, evenly (default 3.0; "
        "smaller makes neighbours harder to order)",
    )
    parser.add_argument("--quick", action="store_true", help="seeds 1 2, 200 prompts, budget 500")
    parser.add_argument(
        "--triads",
        action="store_true",
        help="three responses a prompt (three comparisons), so that an annotator's triads exist",
    )
    parser.add_argument(
        "--refresh-every",
        type=int,
        default=100,
        help="run the beat's dashboard refresh (which gives uncertain_first its model-pair "
        "doubt) after every this many judgments, untimed (default 100; 0: never)",
    )
    parser.add_argument(
        "--curves-out",
        default=None,
        help="write each seed's tau curves (both leaderboards) to this JSON file, for "
        "bench/curves.py to read with other runs' seeds",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.prompts, args.budget = [1, 2], 200, 500
    MODELS.update({name: args.spread * (i / 7 - 0.5) for i, name in enumerate(MODELS)})
    common.bound_runtime(args.timeout)
    common.print_machine()
    print(
        f"\n{len(MODELS)} models (log-strengths {min(MODELS.values()):+.2f} to "
        f"{max(MODELS.values()):+.2f}), annotators {dict(KINDS)}, overlap {OVERLAP}, "
        f"stopping confidence of uncertain_first {args.stop_confidence}, audit rate "
        f"{args.audit_rate}, repeat rate {args.repeat_rate} after {args.repeat_after}, "
        f"honeypot rate {args.honeypot_rate}"
        + (
            f" (gold rate {args.gold_rate}, paused below {args.gold_min_accuracy:.0%} gold "
            f"accuracy after {args.gold_min_answers} answers)"
            if args.honeypot_rate
            else ""
        )
        + "; "
        f"{args.prompts} comparisons and {args.budget} judgments per project; seeds {args.seeds}"
    )
    names = [f"{kind}-{i + 1}" for kind, count in KINDS.items() for i in range(count)]
    runs = [
        Run(
            policy,
            seed,
            f"quality-{policy.replace('_', '-')}-{seed}",
            repeat_rate=args.repeat_rate,
        )
        for seed in args.seeds
        for policy in args.policies
    ]
    started = time.perf_counter()
    with common.temporary_database(prefix="annotate_bench_quality", keep=args.keep_db) as db:
        env = common.production_env(db)
        # No worker runs here: a batch of any size is imported in the request (over
        # IMPORT_BACKGROUND_BYTES it would wait for a worker's task that never comes).
        env["IMPORT_BACKGROUND_BYTES"] = env["IMPORT_MAX_BYTES"] = str(1 << 30)
        print(f"migrate {common.migrate(env):.1f} s")
        spec = {
            "lead": "lead",
            "annotators": names,
            "overlap": OVERLAP,
            "stop_confidence": args.stop_confidence,
            "audit_rate": args.audit_rate,
            "repeat_rate": args.repeat_rate,
            "repeat_after": args.repeat_after,
            "honeypot_rate": args.honeypot_rate,
            "gold_rate": args.gold_rate if args.honeypot_rate else 0.0,
            "gold_min_accuracy": args.gold_min_accuracy if args.honeypot_rate else 0.0,
            "gold_min_answers": args.gold_min_answers,
            "projects": [[run.slug, run.policy] for run in runs],
        }
        tokens = shell(_SETUP, env, SPEC=json.dumps(spec))
        every = args.refresh_every
        refreshes = set(range(every, args.budget, every)) if every > 0 else set()
        with Refresher(env) as refresher, common.Gunicorn(env, workers=args.workers) as server:
            results = []
            for run in runs:
                body, run.truth = import_file(run.seed, args.prompts, 3 if args.triads else 2)
                import_batch(server.port, tokens["lead"], run.slug, body)
                stats_path = f"/api/v1/projects/{run.slug}/stats/"

                taus = {round(f * args.budget) for f in args.checkpoints if 0 < f < 1}

                def stop(
                    n: int, run: Run = run, path: str = stats_path, taus: set[int] = taus
                ) -> None:
                    if n in taus:
                        stats = json.loads(http_get(server.port, tokens["lead"], path))
                        run.tau_at[n] = leaderboard_quality(stats)[0]
                        run.crowd_tau_at[n] = leaderboard_quality(stats, "crowd_leaderboard")[0]
                    if n in refreshes:
                        run.doubt = refresher.refresh(run.slug)
                        run.doubt_written += run.doubt["changed"] if run.doubt else 0

                judge(run, people_of(tokens), server.port, args.budget, stop, taus | refreshes)
                stats = json.loads(http_get(server.port, tokens["lead"], stats_path))
                tau, covered, models = leaderboard_quality(stats)
                crowd_tau, crowd_covered, _ = leaderboard_quality(stats, "crowd_leaderboard")
                run.tau_at[run.judgments] = tau
                run.crowd_tau_at[run.judgments] = crowd_tau
                results.append(
                    {
                        "policy": run.policy,
                        "seed": run.seed,
                        "slug": run.slug,
                        "judgments": run.judgments,
                        "wall": run.wall,
                        "tau": tau,
                        "tau_at": run.tau_at,
                        "crowd_tau_at": run.crowd_tau_at,
                        "covered": covered,
                        "crowd_tau": crowd_tau,
                        "crowd_covered": crowd_covered,
                        "models": models,
                        "agreement": stats["agreement"],
                        "audit": stats["audit_agreement"],
                        "pairs": pairs_quality(server.port, tokens["lead"], run.slug),
                        "stopping": stats["stopping"],
                        "honeypots": run.honeypots,
                        "honeypot_rate": args.honeypot_rate,
                        "paused": run.paused,
                    }
                )
                probed = f", {run.probes} probes answered" if run.repeat_rate else ""
                if args.honeypot_rate:
                    probed += f", {run.honeypots} of them on honeypots"
                    probed += f", paused: {', '.join(run.paused)}" if run.paused else ""
                doubt = (
                    f"; model pairs by doubt at the last refresh {run.doubt['pairs']}, "
                    f"{run.doubt_written} comparisons' doubt written over the run"
                    if run.doubt
                    else ""
                )
                print(f"  {run.slug}: {run.judgments} judgments{probed} in {run.wall:.1f} s{doubt}")
        flags = shell(_FLAGS, env, SLUGS=json.dumps([run.slug for run in runs]))
        for result in results:
            result["people"] = {k: v for k, v in flags[result["slug"]].items() if k != "lead"}
        if args.curves_out:
            setup = {
                k: getattr(args, k)
                for k in ("prompts", "budget", "checkpoints", "stop_confidence", "audit_rate")
            } | {
                "spread": args.spread,
                "refresh_every": args.refresh_every,
                "triads": args.triads,
                "repeat_rate": args.repeat_rate,
            }
            if args.honeypot_rate:  # files written before honeypots keep their setup
                setup |= {
                    k: getattr(args, k)
                    for k in ("honeypot_rate", "gold_rate", "gold_min_accuracy", "gold_min_answers")
                }
            write_curves(
                args.curves_out,
                "quality",
                setup,
                {
                    f"{policy} / {board}": {
                        r["seed"]: r[key] for r in results if r["policy"] == policy
                    }
                    for policy in args.policies
                    for board, key in (("bradley_terry", "tau_at"), ("weighted", "crowd_tau_at"))
                },
            )
        summary([report(p, [r for r in results if r["policy"] == p]) for p in args.policies])
        reach(results, args.policies)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except common.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
