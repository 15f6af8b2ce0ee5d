"""TRAINING_PROCESSES=2 on a real worker: the round's steps train under accelerate launch."""

import psutil
import pytest

from labelapp.models import LabelingRound, PolicyVersion, RewardModelVersion, TrainingRun
from tests.e2e.conftest import wait_for
from tests.e2e.test_round_loop import PPO, labeled_first_round, labeling, train

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.multiprocess,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def launching_workers(workers):
    workers.env |= {"TRAINING_PROCESSES": "2", "TORCH_THREADS": "2"}  # 1 thread per process
    return workers


def test_a_round_trains_through_the_launcher_and_round_two_comes_from_the_new_version(
    launching_workers, live_server
):
    launching_workers.start()
    round1 = labeled_first_round(launching_workers, live_server)
    train(round1, {"method": "ppo", **PPO})

    round2 = wait_for(lambda: labeling(2), 400, "round 2 from v2", launching_workers)
    v2 = PolicyVersion.objects.get(number=2)
    assert round2.policy_version == v2 and v2.method == "ppo"
    reward_run, ppo_run = (TrainingRun.objects.get(kind=kind) for kind in ("reward", "ppo"))
    assert reward_run.metrics["processes"] == ppo_run.metrics["processes"] == 2
    # Rank 0's progress reached the run, one entry per step.
    assert len(ppo_run.metrics["steps"]) == PPO["steps"]
    assert PolicyVersion.objects.count() == 2 and RewardModelVersion.objects.count() == 1


def _launched(worker: psutil.Process) -> psutil.Process | None:
    for child in worker.children():
        if "accelerate.commands.launch" in " ".join(child.cmdline()):
            return child
    return None


def _reward_launched(worker: psutil.Process) -> psutil.Process | None:
    """The launcher of the reward step once that step reports progress, else None."""
    run = TrainingRun.objects.filter(kind="reward", status="running", progress__gt=0).first()
    return run and _launched(worker)


def test_killing_the_launched_processes_fails_the_step_and_makes_no_version(
    launching_workers, live_server
):
    worker = psutil.Process(launching_workers.start().pid)
    round1 = labeled_first_round(launching_workers, live_server)
    train(round1, {"method": "ppo", **PPO, "reward": {"epochs": 80, "batch_size": 1}})

    launched = wait_for(
        lambda: _reward_launched(worker), 180, "reward training under way", launching_workers
    )
    trainers = launched.children(recursive=True)
    launched.kill()

    def failed():
        return LabelingRound.objects.filter(number=1, state="failed").first()

    round1 = wait_for(failed, 60, "the round to fail", launching_workers)
    assert "accelerate launch exited with" in round1.error
    run = TrainingRun.objects.get(kind="reward")
    assert run.status == "failed"
    assert PolicyVersion.objects.count() == 1 and RewardModelVersion.objects.count() == 0
    assert not TrainingRun.objects.filter(kind="ppo").exists()
    _, alive = psutil.wait_procs(trainers, timeout=10)
    assert alive == []
    assert worker.is_running()  # the worker itself carries on


def test_a_worker_killed_during_a_launched_step_takes_its_processes_and_the_step_is_retried(
    launching_workers, live_server
):
    first = launching_workers.start()
    worker = psutil.Process(first.pid)
    round1 = labeled_first_round(launching_workers, live_server)
    # Long enough to be killed in the middle, short enough to train again after the crash.
    train(round1, {"method": "ppo", **PPO, "reward": {"epochs": 30, "batch_size": 1}})

    launched = wait_for(
        lambda: _reward_launched(worker), 180, "reward training under way", launching_workers
    )
    orphans = [launched, *launched.children(recursive=True)]
    launching_workers.kill(first)  # SIGKILL: no finally runs in the worker
    _, alive = psutil.wait_procs(orphans, timeout=15)
    assert alive == []  # the launcher died with the worker, the trainers with the launcher

    launching_workers.start()
    wait_for(lambda: labeling(2), 600, "round 2 after the crash", launching_workers)
    run = TrainingRun.objects.get(kind="reward")
    assert run.status == "succeeded" and run.attempts == 2
    assert PolicyVersion.objects.count() == 2 and RewardModelVersion.objects.count() == 1
