"""Do our exports train as they are? TRL's trainers and FastChat's Elo on the demo's exports.

    .venv/bin/python bench/trainers.py                          # this checkout's app
    .venv/bin/python bench/trainers.py --app-root ../other --app-python .venv/bin/python
    .venv/bin/python bench/trainers.py --formats trl,kto --file-formats jsonl

A script, not a test: it prints a table of what happened, and fails on no cell.

1. A virtualenv of its own, `bench/.venv-trainers/` (git-ignored), made on the first run with the
   commands in `INSTALL` below and reused afterwards (`--reinstall` runs them again). PyTorch is
   pinned to the CPU wheel (a constraints file keeps pip from replacing it), TRL to 1.16, and
   FastChat (`fschat`) is installed without extras, plus the few packages its Elo analysis
   imports. The project's own virtualenv never imports torch or TRL: this driver runs
   `trainers_worker.py` with the other one's python.
2. The demo data, made by the app itself (`--app-root`, default: the checkout holding this
   script; `--app-python`, default `<app-root>/.venv/bin/python`): a throwaway SQLite database
   (or, with `--postgres`, `annotate_bench_<pid>` on the server, dropped at the end),
   `manage.py migrate`, `manage.py demo`, then every demo project judged through the app's own
   services (`assignment_next`, `judgment_submit`) by its three annotators: a hidden better
   candidate per comparison, each annotator agreeing with it most of the time, with ties and
   "both bad" where the project allows them ("better" and "worse" in the output count the votes
   for and against the hidden better one), graded strengths and every criterion in the graded
   project, rankings (with tied places) in the listwise one.
3. The formats, read from the app (`FORMATS` in `apps/exports/formats.py`, and the options of
   `manage.py export`), so that another checkout's formats are found as they are. A format
   parameter named by `--vary` (default `prompt_form`) that the format takes, and that
   `manage.py export` offers with fixed choices, is exported once per choice; otherwise the
   default is used. Each applicable (project, format) is written with
   `manage.py export <slug> --format F [--file-format parquet] -o FILE`.
4. The worker trains a byte-level BPE tokenizer on the exports' texts (nothing is downloaded:
   `HF_HUB_OFFLINE=1`), wraps it in `PreTrainedTokenizerFast` with pad and eos tokens and a small
   chat template, builds a 2-layer Llama (hidden size 32) from a config, loads each file as TRL's
   docs do (`load_dataset("json" | "parquet", data_files=..., split="train")`) and runs TRL's
   `DPOTrainer`, `RewardTrainer` (a sequence classifier, `num_labels=1`) and `KTOTrainer` for
   `max_steps=2` (batch 2, CPU, `report_to=[]`, in a temporary folder). The `arena` file goes
   through FastChat's own command for a clean battle file,
   `python -m fastchat.serve.monitor.elo_analysis --clean-battle-file FILE`: the `json` file
   (`manage.py export --lines false`, where the app has it) as it is, the JSON Lines and Parquet
   ones' rows written unchanged as one JSON array, the clean battle file's form. Formats no
   trainer reads (`openai`, `judgments`, `listwise`) are only loaded with `datasets`.

It prints the machine and the packages, then one line per cell: project, format (with its
variant), file format, trainer, and `ok` with what it computed, or the exception's type and
message on one line (cut at `--width`; the full tracebacks go to the log file it names). A
cell's failure never stops the run; if the worker itself dies, the cell it was running is
reported as such and the worker starts again on the next one.
"""

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's `queue`, which psycopg imports, and Python
# puts the script's folder first on sys.path: move the folder to the end, where `import common`
# still finds it (as bench/export.py does).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Any  # noqa: E402

import common  # noqa: E402

HERE = _HERE
WORKER = HERE / "trainers_worker.py"
VENV = HERE / ".venv-trainers"
VENV_PYTHON = VENV / "bin" / "python"
MARKER = VENV / "annotate-trainers-install.txt"
CONSTRAINTS = VENV / "constraints.txt"
MARK = "TRAINERS-JSON "

# The torch wheel is pinned exactly: asking for plain `torch` (or a range allowing newer) would
# fetch several GB of CUDA. The constraints file holds it there for the second command.
TORCH = "torch==2.13.0"
PACKAGES = (
    "trl==1.16.0",
    "transformers==5.24.0",
    "datasets==5.2.0",
    "tokenizers==0.23.3",
    "accelerate==1.15.0",
    # FastChat without extras; its Elo analysis imports pytz, pandas, plotly, tqdm and, for the
    # Bradley-Terry fit, scikit-learn.
    "fschat==0.2.36",
    "pytz==2026.6",
    "plotly==7.1.0",
    "scikit-learn==1.9.1",
    "pandas==3.1.1",
)
INSTALL: tuple[tuple[str, ...], ...] = (
    ("{python}", "-m", "venv", "{venv}"),
    ("{venv_python}", "-m", "pip", "install", TORCH),
    ("{venv_python}", "-m", "pip", "install", "-c", "{constraints}", *PACKAGES),
)

# Which trainers read which format. Formats not named here are only loaded with `datasets`.
TRAINERS: dict[str, tuple[str, ...]] = {
    "trl": ("dpo", "reward", "kto"),
    "trl-implicit": ("dpo", "reward", "kto"),
    "hh-rlhf": ("dpo", "reward", "kto"),
    "kto": ("kto",),
    "arena": ("fastchat-elo",),
}
LOAD_ONLY = "load_dataset"
# Formats that only a scheme's projects have rows in.
ONLY_SCHEMES: dict[str, tuple[str, ...]] = {
    "arena": ("pairwise", "graded"),
    "listwise": ("listwise",),
}
NO_EXPORT = ("card",)  # Markdown: not a data file
# `--file-formats json`: one JSON array (`manage.py export --lines false`, where the app has it),
# for these formats only.
JSON_ARRAY = "json"
ARRAY_FORMATS = ("arena",)


class TrainersError(common.BenchError):
    pass


# --- the virtualenv ----------------------------------------------------------------------------


def install_commands() -> list[list[str]]:
    values = {
        "python": sys.executable,
        "venv": str(VENV),
        "venv_python": str(VENV_PYTHON),
        "constraints": str(CONSTRAINTS),
    }
    return [[part.format(**values) for part in command] for command in INSTALL]


def ensure_venv(reinstall: bool) -> float:
    """Creates and fills the trainers' virtualenv unless it is there; returns the seconds taken."""
    wanted = "\n".join(" ".join(command) for command in INSTALL) + "\n"
    if not reinstall and VENV_PYTHON.exists() and MARKER.is_file() and MARKER.read_text() == wanted:
        return 0.0
    started = time.perf_counter()
    for n, command in enumerate(install_commands()):
        if n == 1:
            CONSTRAINTS.write_text(TORCH + "\n")
        print(f"  $ {' '.join(command)}", flush=True)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise TrainersError(
                f"installing the trainers' virtualenv failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}{result.stderr[-4000:]}"
            )
    MARKER.write_text(wanted)
    return time.perf_counter() - started


# --- the app -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    root: Path
    python: str
    env: dict[str, str]

    def manage(self, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, str(self.root / "manage.py"), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def must(self, args: list[str], timeout: float = 600) -> str:
        result = self.manage(args, timeout)
        if result.returncode != 0:
            raise TrainersError(
                f"manage.py {args[0]} failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}{result.stderr[-4000:]}"
            )
        return result.stdout

    def shell_json(self, code: str, timeout: float = 600, **values: Any) -> Any:
        """Runs `code` in `manage.py shell` with MARK and `values` (as JSON strings) defined;
        returns the JSON it printed after MARK."""
        given = "".join(f"{name} = {json.dumps(value)!r}\n" for name, value in values.items())
        out = self.must(["shell", "-c", f"MARK = {MARK!r}\n{given}{code}"], timeout)
        for line in out.splitlines():
            if line.startswith(MARK):
                return json.loads(line[len(MARK) :])
        raise TrainersError(f"the shell printed no result:\n{out[-2000:]}")


# Runs in `manage.py shell`: every demo project judged by its annotators through the services.
JUDGE = """
import json, random
from collections import Counter
from django.db import transaction
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Membership, Project

def pick(better_left, rng, project, graded):
    \"\"\"(the answer's fields, what it says of the hidden better candidate).\"\"\"
    roll = rng.random()
    if project.allow_both_bad and roll < 0.06:
        return {"choice": "both_bad"}, "both_bad"
    if project.allow_tie and roll < 0.16:
        return ({"strength": 0} if graded else {"choice": "tie"}), "tie"
    agree = rng.random() < 0.8
    left = better_left if agree else not better_left
    said = "better" if agree else "worse"
    if graded:
        size = rng.randint(1, 3)
        return {"strength": -size if left else size}, said
    return {"choice": "left" if left else "right"}, said

def judge(project):
    graded = project.scheme == "graded"
    listwise = project.scheme == "listwise"
    names = [c["name"] for c in project.criteria]
    members = Membership.objects.filter(project=project, role="annotator").select_related("user")
    counts = Counter()
    for member in members.order_by("user__username"):
        user = member.user
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            rng = random.Random(f"{project.slug}:{lease.comparison_id}:{user.username}")
            truth = random.Random(f"{project.slug}:{lease.comparison_id}")
            kwargs = {"assignment_id": lease.pk, "annotator": user, "duration_ms": 4000}
            if listwise:
                shown = [c.external_id for c in lease.shown]
                # Each response's hidden worth is its own, whatever order it was shown in.
                score = {
                    c: random.Random(f"{project.slug}:{lease.comparison_id}:{c}").random()
                    + rng.gauss(0, 0.25)
                    for c in sorted(shown)
                }
                ranking = [[c] for c in sorted(shown, key=lambda c: -score[c])]
                if project.allow_tie and len(ranking) > 2 and rng.random() < 0.25:
                    ranking = [ranking[0] + ranking[1], *ranking[2:]]
                    counts["ranking with a tie"] += 1
                else:
                    counts["ranking"] += 1
                kwargs["ranking"] = ranking
            else:
                a_better = truth.random() < 0.5
                better_left = a_better == (lease.left_id == lease.comparison.candidate_a_id)
                answer, said = pick(better_left, rng, project, graded)
                kwargs.update(answer)
                counts[said] += 1
                if names:
                    kwargs["criteria"] = {
                        name: pick(better_left, rng, project, graded)[0] for name in names
                    }
            if project.flags and rng.random() < 0.1:
                kwargs["flags"] = [project.flags[0]]
            if project.rationale == "required":
                kwargs["rationale"] = "Judged by the trainers bench."
            judgment_submit(**kwargs)
    return {
        "slug": project.slug,
        "scheme": project.scheme,
        "comparisons": project.comparisons.count(),
        "annotators": members.count(),
        "judgments": dict(counts),
    }

out = []
for project in Project.objects.order_by("id"):
    # One transaction per project: on SQLite a commit per vote (an fsync each) takes minutes.
    with transaction.atomic():
        out.append(judge(project))
print(MARK + json.dumps(out))
"""

# Runs in `manage.py shell`: the formats, the parameters each takes, and the export command's
# options with their choices.
DISCOVER = """
import json
from apps.exports.formats import FORMATS
from apps.exports.management.commands.export import Command
parser = Command().create_parser("manage.py", "export")
options = {}
for action in parser._actions:
    if action.option_strings:
        options[action.dest] = {
            "flag": action.option_strings[-1] if action.option_strings[-1].startswith("--")
            else action.option_strings[0],
            "choices": list(action.choices) if action.choices else None,
            "default": action.default,
        }
print(MARK + json.dumps({
    "formats": {name: list(f.parameters) for name, f in FORMATS.items()},
    "options": options,
}, default=str))
"""


# Runs in `manage.py shell`: `manage.py export` (the same Command, through call_command) once per
# file, in one process rather than one Django start-up per file. A failed export is that file's
# result: CommandError's message (a 400's), or any other exception's type and message.
EXPORT = """
import io, json, traceback
from django.core.management import call_command
from django.core.management.base import CommandError
out = []
for arguments in json.loads(ARGUMENTS):
    try:
        call_command(*arguments, stdout=io.StringIO(), stderr=io.StringIO())
        out.append("")
    except CommandError as exc:
        out.append(f"CommandError: {exc}")
    except Exception as exc:
        traceback.print_exc()
        out.append(f"{type(exc).__name__}: {exc}")
print(MARK + json.dumps(out))
"""


@dataclass(frozen=True)
class Export:
    project: str
    format: str
    variant: str  # "" for the defaults, else "name=value"
    file_format: str
    path: str
    arguments: list[str]


def plan_exports(
    projects: list[dict[str, Any]],
    discovered: dict[str, Any],
    formats: list[str] | None,
    file_formats: list[str],
    vary: list[str],
    folder: Path,
) -> tuple[list[Export], list[str]]:
    notes: list[str] = []
    available = [name for name in discovered["formats"] if name not in NO_EXPORT]
    chosen = available if formats is None else formats
    for name in chosen:
        if name not in available:
            notes.append(f"format {name!r} is not one of the app's: {', '.join(available)}")
    option = discovered["options"].get("lines")
    lines = option["flag"] if option and "false" in (option["choices"] or ()) else None
    if JSON_ARRAY in file_formats and lines is None:
        notes.append("`manage.py export` has no --lines false: no JSON array file")
    exports: list[Export] = []
    for project in projects:
        for name in chosen:
            if name not in available:
                continue
            schemes = ONLY_SCHEMES.get(name)
            if schemes is not None and project["scheme"] not in schemes:
                continue
            variants: list[tuple[str, list[str]]] = [("", [])]
            for parameter in vary:
                if parameter not in discovered["formats"][name]:
                    continue
                option = discovered["options"].get(parameter)
                if option is None or not option["choices"]:
                    notes.append(
                        f"{name} takes {parameter!r}, but `manage.py export` offers no fixed "
                        "choices for it: exported with its default only"
                    )
                    continue
                variants = [
                    (
                        ",".join(part for part in (label, f"{parameter}={choice}") if part),
                        [*arguments, option["flag"], str(choice)],
                    )
                    for label, arguments in variants
                    for choice in option["choices"]
                ]
            for label, arguments in variants:
                for file_format in file_formats:
                    if file_format == JSON_ARRAY:
                        # One JSON array (`lines=false`), where the app writes one: the form
                        # of FastChat's clean battle file, given to it as it is.
                        if name not in ARRAY_FORMATS or lines is None:
                            continue
                        written = [lines, "false", "--file-format", "jsonl"]
                    else:
                        written = ["--file-format", file_format]
                    stem = "-".join(
                        part
                        for part in (
                            project["slug"],
                            name,
                            label.replace("=", "-").replace(",", "-"),
                        )
                        if part
                    )
                    path = folder / f"{stem}.{file_format}"
                    exports.append(
                        Export(
                            project=project["slug"],
                            format=name,
                            variant=label,
                            file_format=file_format,
                            path=str(path),
                            arguments=[
                                "export",
                                project["slug"],
                                "--format",
                                name,
                                *arguments,
                                *written,
                                "-o",
                                str(path),
                            ],
                        )
                    )
    return exports, notes


def one_line(text: str) -> str:
    return " ".join(text.split())


# --- the worker --------------------------------------------------------------------------------


@dataclass
class Cell:
    id: int
    project: str
    format: str
    variant: str
    file_format: str
    trainer: str
    path: str
    result: str = ""
    seconds: float = 0.0
    rows: int | None = None


def worker_env(folder: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "DATABASE_URL")
    }
    env.update(
        HF_HOME=str(folder / "hf"),
        HF_DATASETS_CACHE=str(folder / "hf" / "datasets"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
        CUDA_VISIBLE_DEVICES="",
        PYTHONUNBUFFERED="1",
        MPLBACKEND="Agg",
        # The log keeps the tracebacks, not progress bars.
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        TQDM_DISABLE="1",
    )
    return env


def run_worker(
    cells: list[Cell], folder: Path, log: Path, timeout: float
) -> tuple[dict[str, Any], float]:
    """Runs the worker until every cell has a result; returns the versions it reported."""
    plan = folder / "plan.json"
    results = folder / "results.jsonl"
    plan.write_text(
        json.dumps(
            {
                "cells": [asdict(cell) for cell in cells],
                "texts": sorted({cell.path for cell in cells if Path(cell.path).is_file()}),
                "work": str(folder / "work"),
                "python": str(VENV_PYTHON),
            }
        )
    )
    by_id = {cell.id: cell for cell in cells}
    versions: dict[str, Any] = {}
    started = time.perf_counter()
    for _attempt in range(len(cells) + 1):
        pending = [cell for cell in cells if not cell.result]
        if not pending:
            break
        with log.open("a") as out:
            proc = subprocess.run(
                [str(VENV_PYTHON), str(WORKER), str(plan), str(results)],
                cwd=folder,
                env=worker_env(folder),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=max(60.0, timeout - (time.perf_counter() - started)),
                check=False,
            )
        running: int | None = None
        if results.is_file():
            for line in results.read_text().splitlines():
                record = json.loads(line)
                if "versions" in record:
                    versions = record["versions"]
                elif "setup" in record:
                    versions["setup"] = record["setup"]
                elif "start" in record:
                    running = record["start"]
                elif "id" in record:
                    cell = by_id[record["id"]]
                    cell.result = record["result"]
                    cell.seconds = record["seconds"]
                    cell.rows = record.get("rows")
                    if running == record["id"]:
                        running = None
        if running is not None and not by_id[running].result:
            by_id[
                running
            ].result = f"worker died (exit {proc.returncode}) in this cell; see the log"
            with results.open("a") as out:
                out.write(
                    json.dumps({"id": running, "result": by_id[running].result, "seconds": 0})
                    + "\n"
                )
        elif proc.returncode != 0 and not any(cell.result for cell in pending):
            # It died before its first cell (an import, the tokenizer): every cell says so.
            for cell in pending:
                cell.result = f"worker failed (exit {proc.returncode}) before the cell; see the log"
            break
    return versions, time.perf_counter() - started


# --- output ------------------------------------------------------------------------------------


def machine_lines(app: App, versions: dict[str, Any]) -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = "unknown"
    ram = float("nan")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    packages = ", ".join(f"{name} {version}" for name, version in versions.get("packages", {}))
    return [
        f"cpu:      {cpu}, {os.cpu_count()} cores ({usable} usable)",
        f"ram:      {ram:.1f} GiB",
        f"os:       {platform.platform()}",
        f"python:   {versions.get('python', '?')} (trainers' virtualenv), app: {app.python}",
        f"packages: {packages}",
    ]


def print_table(cells: list[Cell], width: int) -> None:
    headers = ("project", "format", "file", "trainer", "rows", "s", "result")
    rows = []
    for cell in cells:
        result = cell.result if len(cell.result) <= width else cell.result[: width - 1] + "…"
        rows.append(
            (
                cell.project,
                cell.format + (f" [{cell.variant}]" if cell.variant else ""),
                cell.file_format,
                cell.trainer,
                "" if cell.rows is None else str(cell.rows),
                f"{cell.seconds:.1f}",
                result,
            )
        )
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(6)]
    print("  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)) + "  result")
    print("  " + "  ".join("-" * w for w in widths) + "  " + "-" * 6)
    for row in rows:
        print(
            "  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) + "  " + row[6]
        )


# --- main --------------------------------------------------------------------------------------


@contextmanager
def database(postgres: bool, keep: bool) -> Iterator[str]:
    if postgres:
        with common.temporary_database(keep=keep) as url:
            yield url
    else:
        with common.temporary_sqlite() as url:
            yield url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app-root", type=Path, default=HERE.parent, help="the app's checkout")
    parser.add_argument("--app-python", help="its python (default <app-root>/.venv/bin/python)")
    parser.add_argument("--formats", help="comma-separated (default: every format of the app)")
    parser.add_argument(
        "--file-formats",
        default="jsonl,parquet,json",
        help="jsonl, parquet, json (a JSON array, arena only, where the app writes one)",
    )
    parser.add_argument(
        "--vary",
        default="prompt_form",
        help="comma-separated format parameters exported once per choice, where taken",
    )
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL, not SQLite")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--reinstall", action="store_true", help="run the install commands again")
    parser.add_argument("--width", type=int, default=160, help="a result's printed width")
    parser.add_argument("--log", type=Path, help="the worker's log (default bench/out/...)")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()

    common.bound_runtime(args.timeout)
    started = time.perf_counter()
    app_root = args.app_root.resolve()
    app_python = args.app_python or str(app_root / ".venv" / "bin" / "python")
    if not (app_root / "manage.py").is_file():
        raise SystemExit(f"--app-root: no manage.py in {app_root}")
    if not Path(app_python).exists():
        raise SystemExit(f"--app-python: {app_python} does not exist")
    file_formats = [f.strip() for f in args.file_formats.split(",") if f.strip()]
    formats = None if not args.formats else [f.strip() for f in args.formats.split(",")]
    vary = [v.strip() for v in args.vary.split(",") if v.strip()]
    commit = subprocess.run(
        ["git", "-C", str(app_root), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(app_root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    log = args.log or HERE / "out" / f"trainers-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)

    print(f"app:      {app_root} at {commit[:90]}{' (with uncommitted changes)' if dirty else ''}")
    print(f"log:      {log}")
    print("virtualenv", flush=True)
    seconds = ensure_venv(args.reinstall)
    print(f"  {VENV} ({'reused' if seconds == 0 else f'installed in {seconds:.0f} s'})")

    with (
        tempfile.TemporaryDirectory(prefix="annotate_trainers_") as temp,
        database(args.postgres, args.keep_db) as url,
    ):
        folder = Path(temp)
        env = common.app_env(url)
        for key in ("SECRET_KEY", "DEBUG", "REDIS_URL"):
            env.pop(key, None)
        app = App(root=app_root, python=app_python, env=env)
        print("the demo data", flush=True)
        timings = []
        outcome: Any = None
        for name, action in (
            ("migrate", lambda: app.must(["migrate", "--noinput", "-v", "0"])),
            ("demo", lambda: app.must(["demo", "--quiet"])),
            ("judging", lambda: app.shell_json(JUDGE, timeout=1800)),
        ):
            step = time.perf_counter()
            outcome = action()
            timings.append(f"{name} {time.perf_counter() - step:.1f} s")
        projects: list[dict[str, Any]] = outcome
        print(f"  {'PostgreSQL' if args.postgres else 'SQLite'}: {', '.join(timings)}")
        for project in projects:
            print(
                f"  {project['slug']} ({project['scheme']}): {project['comparisons']} "
                f"comparisons, {project['annotators']} annotators, judgments "
                f"{json.dumps(project['judgments'], sort_keys=True)}"
            )
        discovered = app.shell_json(DISCOVER)
        exports, notes = plan_exports(
            projects, discovered, formats, file_formats, vary, folder / "exports"
        )
        (folder / "exports").mkdir()
        print(f"  formats: {', '.join(discovered['formats'])}")
        for note in notes:
            print(f"  note: {note}")

        print(f"exports ({len(exports)} files)", flush=True)
        step = time.perf_counter()
        cells: list[Cell] = []
        failures = app.shell_json(
            EXPORT, timeout=1800, ARGUMENTS=[export.arguments for export in exports]
        )
        for export, failure in zip(exports, failures, strict=True):
            for trainer in TRAINERS.get(export.format, (LOAD_ONLY,)):
                cells.append(
                    Cell(
                        id=len(cells),
                        project=export.project,
                        format=export.format,
                        variant=export.variant,
                        file_format=export.file_format,
                        trainer=trainer,
                        path=export.path,
                        result=f"export failed: {one_line(failure)}" if failure else "",
                    )
                )
        print(f"  written in {time.perf_counter() - step:.1f} s")

        print(f"trainers ({sum(1 for c in cells if not c.result)} cells)", flush=True)
        versions, worker_seconds = run_worker(
            [c for c in cells if not c.result],
            folder,
            log,
            args.timeout - (time.perf_counter() - started),
        )
        setup = versions.get("setup")
        if setup:
            error = f"; {setup['error']}" if setup["error"] else ""
            print(
                f"  tokenizer ({setup['vocabulary']} tokens, trained on the exports' texts) and "
                f"models built in {setup['seconds']:.1f} s{error}"
            )
        print(f"  ran in {worker_seconds:.1f} s")

    print()
    print("machine")
    for line in machine_lines(app, versions):
        print(f"  {line}")
    print()
    print_table(cells, args.width)
    failed = sum(1 for c in cells if not c.result.startswith("ok"))
    on_json = sum(1 for c in cells if c.result.startswith("ok") and "(but JSON text" in c.result)
    print()
    print(
        f"{len(cells) - failed} ok ({on_json} of them on JSON text), {failed} failed, of "
        f"{len(cells)} cells; {time.perf_counter() - started:.0f} s in all"
    )
    print(textwrap.fill(f"full errors: {log}", 100))
    return 0


if __name__ == "__main__":
    sys.exit(main())
