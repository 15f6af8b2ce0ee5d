"""The worker's side of the chain: a function for every step kind, torch threads per process."""

import torch
from celery.signals import worker_process_init

import rlhf_worker.celery  # noqa: F401 (connects the signal handler)
from labelapp.models import TrainingRun
from labelapp.services.training import CHAIN
from rlhf_worker.steps import STEPS


def test_every_kind_of_step_has_one_entry_in_the_chain_and_one_in_the_worker():
    assert set(CHAIN) == set(STEPS) == set(TrainingRun.Kind.values)


def test_a_worker_process_runs_torch_on_torch_threads(settings):
    before = torch.get_num_threads()
    settings.TORCH_THREADS = 1 if before != 1 else 2
    try:
        worker_process_init.send(sender="test")
        assert torch.get_num_threads() == settings.TORCH_THREADS
    finally:
        torch.set_num_threads(before)


def test_progress_is_best_effort_while_the_database_is_away(db, monkeypatch, caplog):
    """A progress report that meets a restarting database is logged and skipped: the step
    trains on (the real restart is bench/compose_smoke.py's)."""
    from django.db import OperationalError

    from rlhf_worker import steps

    calls = []

    def unreachable(run_id, fraction, metrics=None):
        calls.append(fraction)
        raise OperationalError("the database system is shutting down")

    monkeypatch.setattr(steps, "report_progress", unreachable)
    on_step = steps.progress_of(TrainingRun(pk=7))
    on_step(1, 4, {"loss": 0.5})
    on_step(2, 4, {"loss": 0.4})
    assert calls == [0.25, 0.5]
    assert "run 7: progress not recorded" in caplog.text
