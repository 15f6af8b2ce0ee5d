"""Celery tasks: thin. Claim the run, hand it to its step, record the result."""

import logging
import traceback

from celery import Task
from django.db import InterfaceError, OperationalError

from labelapp.services import training
from labelapp.services.training import claim_run, complete_run, fail_run
from rlhf_worker.celery import app

log = logging.getLogger(__name__)


DATABASE_GONE = (OperationalError, InterfaceError, ConnectionError)


class StepTask(Task):
    """Marks the run and its round failed when a step gives up (after its retries)."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        try:
            fail_run(args[0], "".join(traceback.format_exception(exc)))
        except DATABASE_GONE:  # still unreachable: the run stays as it was, for the sweeper
            log.warning("run %s: could not record its failure (%s); the sweeper sends it again "
                        "once the database is back", args[0], exc)  # fmt: skip


@app.task(
    base=StepTask,
    name="rlhf_worker.tasks.run_step",
    # The database restarting (seconds to a minute): retried after 1, 2, 4 ... 60 s, about four
    # minutes in all, before the step is given up.
    autoretry_for=DATABASE_GONE,
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=False,
    max_retries=8,
)
def run_step(run_id: int) -> str:
    """Run one step of a round's training chain (idempotent: a finished run is left alone)."""
    from rlhf_worker.steps import STEPS  # imports torch: only in the worker, only when needed

    run = claim_run(run_id)
    if run is None:
        log.info("run %s is finished or taken by a live worker; nothing to do", run_id)
        return "skipped"
    result = STEPS[run.kind](run)
    complete_run(run, result)
    return "done"


@app.task(name="rlhf_worker.tasks.resend_stuck_runs")
def resend_stuck_runs() -> list[int]:
    """The sweeper, run by Celery beat: send again the steps that no worker holds."""
    ids = training.resend_stuck_runs()
    if ids:
        log.warning("re-sent training runs %s: no worker held them", ids)
    return ids
