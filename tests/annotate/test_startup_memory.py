"""What a process loads as it starts: the scientific libraries that only the statistics and the
Parquet writer use (scipy, statsmodels, and pandas and pyarrow, which statsmodels loads: about
150 MiB together) are imported where they are used, so that a web worker, a Celery worker and an
import (`manage.py import_batch`, bench/import_rate.py's RSS) do not carry them from the start."""

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("scipy", "statsmodels", "pandas", "pyarrow")

START = """
import json, sys
import django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns  # every view module, and the admin's
from django.core.management import get_commands, load_command_class
for name, app in get_commands().items():
    if app.startswith("apps."):
        load_command_class(app, name)
from annotate.celery import app
app.loader.import_default_modules()  # every app's tasks, as a worker loads them
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy})))
"""


def loaded_at_start() -> list[str]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "annotate.settings"}
    done = subprocess.run(
        [sys.executable, "-c", START.replace("{heavy}", repr(set(HEAVY)))],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_no_process_loads_the_statistics_libraries_as_it_starts():
    assert loaded_at_start() == []


def test_the_statistics_load_them_when_used():
    from apps.agreement.flags import wilson_interval

    low, high = wilson_interval(7, 10)
    assert 0.39 < low < 0.40 and 0.89 < high < 0.90
    assert "statsmodels" in sys.modules
