"""Training steps under `accelerate launch`: 2 processes on gloo follow the 1-process run."""

import time

import psutil
import pytest

from rlhf_worker.launch import LaunchFailedError, LaunchSettings, launch_training
from rlhf_worker.training.artifacts import load_reward_model
from rlhf_worker.training.reward import RewardConfig, train_reward_model
from tests.rlhf_worker.test_reward import preference_data

pytestmark = pytest.mark.multiprocess

TWO = LaunchSettings(processes=2, threads_per_process=1)
# batch_size 5 over 2 processes: shares of 3 and 2 rankings, so the loss weighting is exercised.
REWARD = RewardConfig(epochs=2, batch_size=5, learning_rate=1e-3, eval_fraction=0.15)


def test_the_reward_model_in_two_processes_follows_the_one_process_loss_curve(
    tiny_model_dir, tmp_path
):
    examples = preference_data(30)
    alone = train_reward_model(tiny_model_dir, examples, tmp_path / "one", REWARD)
    steps = []
    launched = launch_training(
        train_reward_model,
        (tiny_model_dir, examples, tmp_path / "two", REWARD),
        {},
        tmp_path / "work",
        TWO,
        on_step=lambda step, total, metrics: steps.append((step, total)),
    )
    assert (alone["processes"], launched["processes"]) == (1, 2)
    # Same global batches, gradients averaged exactly: only the order of float sums differs.
    assert [s["loss"] for s in launched["steps"]] == pytest.approx(
        [s["loss"] for s in alone["steps"]], rel=1e-4
    )
    assert launched["eval_loss"] == pytest.approx(alone["eval_loss"], rel=1e-4)
    assert launched["eval_pairs"] == alone["eval_pairs"]
    # Rank 0 alone reported progress, once per step; one model was saved, and nothing else.
    assert steps == [(i, len(alone["steps"])) for i in range(1, len(alone["steps"]) + 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    load_reward_model(tmp_path / "two")  # a complete safetensors model


def _children_of_this_process() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


def _all_gone(processes: list[psutil.Process]) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=5)
    return not alive


def test_a_killed_launch_fails_the_step_and_saves_no_model(tiny_model_dir, tmp_path):
    slow = RewardConfig(epochs=200, batch_size=2)
    launched: list[psutil.Process] = []

    def kill_the_launcher(step, total, metrics):
        if step == 2:
            launched.extend(_children_of_this_process())  # the launcher and its 2 trainers
            launcher = psutil.Process().children()[0]
            launcher.kill()  # as the OOM killer would: its trainers are orphaned

    with pytest.raises(LaunchFailedError, match="exited with"):
        launch_training(
            train_reward_model,
            (tiny_model_dir, preference_data(20), tmp_path / "rm", slow),
            {},
            tmp_path / "work",
            TWO,
            on_step=kill_the_launcher,
        )
    assert len(launched) == 3
    assert _all_gone(launched)  # the orphaned trainers were stopped with their process group
    assert not (tmp_path / "rm").exists()
    assert (tmp_path / "work" / "launch.log").exists()  # kept, for whoever looks into it


def test_an_interrupted_worker_stops_the_launched_processes(tiny_model_dir, tmp_path):
    class Revoked(Exception):  # as a Celery time limit or revoke raises in the task
        pass

    started = time.monotonic()

    launched: list[psutil.Process] = []

    def revoke_while_loading(fraction):
        launched.extend(_children_of_this_process())
        raise Revoked

    with pytest.raises(Revoked):
        launch_training(
            train_reward_model,
            (tiny_model_dir, preference_data(20), tmp_path / "rm", RewardConfig(epochs=200)),
            {},
            tmp_path / "work",
            TWO,
            heartbeat=revoke_while_loading,
        )
    assert launched and _all_gone(launched)
    assert not (tmp_path / "rm").exists()
    assert time.monotonic() - started < 30


def test_a_launched_step_runs_only_training_functions(tmp_path):
    with pytest.raises(ValueError, match="not a training function"):
        launch_training(print, (), {}, tmp_path / "work", TWO)
