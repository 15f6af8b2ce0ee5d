"""Sending work to the Celery workers by task name: labelapp never imports rlhf_worker code."""

import logging

from celery import Celery
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

_app: Celery | None = None


def celery_app() -> Celery:
    """A Celery app that only sends (created lazily, so tests without a broker never connect)."""
    global _app
    if _app is None:
        _app = Celery("labelapp")
        _app.config_from_object(settings, namespace="CELERY")
    return _app


def enqueue_on_commit(task_name: str, *args: object, queue: str = "default") -> None:
    """Send `task_name(*args)` once the current transaction commits (never for rolled-back rows).

    A failed send is logged and left to the sweeper, which re-enqueues queued runs: the row that
    says the work is wanted is already committed, so nothing is lost.
    """

    def send() -> None:
        try:
            celery_app().send_task(
                task_name,
                args=list(args),
                queue=queue,
                retry=True,
                retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
            )
        except Exception:
            log.exception("could not enqueue %s%r; the sweeper will retry", task_name, args)

    transaction.on_commit(send)
