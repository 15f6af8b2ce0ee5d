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
