"""The structure README's ARCHITECTURE section describes, checked on the source.

- Apps are layers: an app's own modules (models, services, selectors, ...) import only apps to
  its left in LAYERS. Entry points (views, API, admin, forms, tasks, urls, commands, template
  tags, the AppConfig) sit on top of every app and may import any.
- No module imports a part of the project inside a function to dodge a cycle.
- One module asks which database serves a connection (annotate/db.py); the queue chooses its
  backend once, from it (apps/judging/queue/backend.py).
- annotate/'s shared modules (errors, broker, cache, rows, celery) import no app.
- A task's name is its dotted path: services send tasks by name (annotate.broker.send_task).
"""

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Task

ROOT = Path(__file__).resolve().parents[2]

# Left to right: each app may import those before it, never those after it.
LAYERS = (
    "audit",
    "projects",
    "endpoints",
    "batches",
    "generation",
    "judging",
    "accounts",
    "judges",
    "agreement",
    "exports",
    "dashboard",
)
# Modules of an app that are doors into it, not parts other apps build on.
ENTRY_MODULES = {"views", "api", "job_api", "admin", "forms", "tasks", "urls", "apps"}
ENTRY_PACKAGES = {"management", "templatetags"}
# annotate/'s modules that apps build on: they must not import apps themselves.
SHARED = {
    "annotate.errors",
    "annotate.broker",
    "annotate.cache",
    "annotate.rows",
    "annotate.celery",
    "annotate.jobs",
}
# The one module that may look at connection.vendor.
VENDOR_MODULE = "annotate/db.py"
# The functions that import the project when they run, and why they must.
RUN_TIME_IMPORTS = {
    # Django's place for hooks: the app's models are loaded only once ready() runs.
    ("apps.judging.apps", "ready"): "apps.judging",
    ("apps.batches.apps", "ready"): "apps.batches",
    # pyarrow (about 50 MiB) is loaded only by a process that writes a Parquet file
    # (tests/annotate/test_startup_memory.py).
    ("apps.exports.jobs", "export_parquet_write"): "apps.exports.parquet",
    # A worker's start, once Django is set up: annotate.celery is imported before any app can be.
    ("annotate.celery", "refuse_stale_database_functions"): "apps.judging.queue.installed",
}


def _sources(*tops: str) -> Iterator[Path]:
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_entry(path: Path) -> bool:
    parts = path.relative_to(ROOT).parts
    if len(parts) < 3:
        return False
    return Path(parts[2]).stem in ENTRY_MODULES or parts[2] in ENTRY_PACKAGES


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """Line numbers of imports under `if TYPE_CHECKING:` (hints only: nothing runs them)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    lines.add(inner.lineno)
    return lines


def _imports(tree: ast.AST) -> Iterator[tuple[ast.stmt, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name


def _app(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "apps" and len(parts) > 1 else None


def test_every_app_is_a_layer():
    apps = {path.name for path in (ROOT / "apps").iterdir() if (path / "apps.py").exists()}
    assert apps <= set(LAYERS), f"apps missing from LAYERS: {sorted(apps - set(LAYERS))}"


def test_apps_import_only_the_layers_below_them():
    upward = []
    for path in _sources("apps"):
        app = _app(_module(path))
        if app is None or _is_entry(path):
            continue
        tree = ast.parse(path.read_text())
        hints = _type_checking_blocks(tree)
        for node, imported in _imports(tree):
            target = _app(imported)
            if node.lineno in hints or target is None or target == app:
                continue
            entry_target = imported.split(".")[2:3] and (
                imported.split(".")[2] in ENTRY_MODULES | ENTRY_PACKAGES
            )
            if LAYERS.index(target) > LAYERS.index(app) or entry_target:
                upward.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {imported}")
    assert not upward, "\n".join(upward)


def test_no_function_imports_the_project():
    local = []
    for path in _sources("apps", "annotate"):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node, imported in _imports(function):
                if RUN_TIME_IMPORTS.get((_module(path), function.name)) == imported:
                    continue
                if imported.split(".")[0] in {"apps", "annotate"}:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    local.append(f"{where} {function.name}() imports {imported}")
    assert not local, "\n".join(local)


def test_shared_modules_of_annotate_import_no_app():
    found = []
    for module in sorted(SHARED):
        path = ROOT / (module.replace(".", "/") + ".py")
        for node, imported in _imports(ast.parse(path.read_text())):
            if imported in RUN_TIME_IMPORTS.values():
                continue
            if imported.split(".")[0] == "apps":
                found.append(f"{module}:{node.lineno} imports {imported}")
    assert not found, "\n".join(found)


def test_only_one_module_asks_for_the_database_vendor():
    found = []
    for path in _sources("apps", "annotate"):
        relative = path.relative_to(ROOT).as_posix()
        if relative == VENDOR_MODULE:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ".vendor" in line and not line.lstrip().startswith("#"):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def _task_modules() -> Iterator[str]:
    for path in sorted((ROOT / "apps").glob("*/tasks.py")):
        yield _module(path)


@pytest.mark.parametrize("module", list(_task_modules()))
def test_a_task_is_named_by_its_dotted_path(module):
    tasks = {
        name: value
        for name, value in vars(importlib.import_module(module)).items()
        if isinstance(value, Task) and getattr(value, "__module__", module) == module
    }
    assert tasks, f"{module} defines no task"
    for name, task in tasks.items():
        assert task.name == f"{module}.{name}"
