"""Tasks run in-process (Celery eager: `make run`, the tests) from several threads at once."""

import threading
import time

from celery import shared_task
from celery._state import task_join_will_block

from annotate.broker import send_task


@shared_task(name="tests.annotate.test_broker.nap")
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_overlapping_in_process_tasks_leave_no_task_running_flag_behind():
    # The first starts, the second starts, the first ends, then the second: Celery's eager
    # apply_async() saves and restores a process-wide flag around each run, and this order left
    # it set, after which every result.get() in the process refused to run.
    second = threading.Thread(target=lambda: (time.sleep(0.05), send_task(nap.name, 0.4)))
    second.start()
    send_task(nap.name, 0.2)
    second.join()
    assert task_join_will_block() is False
    assert nap.apply(args=[0]).get() == 0
