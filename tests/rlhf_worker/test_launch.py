"""Training steps under `accelerate launch`: 2 processes on gloo follow the 1-process run."""

import os
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
import torch

from rlhf_worker.launch import LaunchFailedError, LaunchSettings, launch_command, launch_training
from rlhf_worker.training.artifacts import load_causal_lm, load_reward_model
from rlhf_worker.training.dpo import DPOTrainingConfig, train_dpo
from rlhf_worker.training.online import OnlineRLConfig, train_online
from rlhf_worker.training.ppo import PPOConfig, train_ppo
from rlhf_worker.training.reward import RewardConfig, train_reward_model
from rlhf_worker.training.sft import SFTConfig, sft_model_dir
from tests.rlhf_worker.test_reward import preference_data
from tests.rlhf_worker.test_sft import PAIRS

pytestmark = pytest.mark.multiprocess

DOCS = Path(__file__).resolve().parents[2] / "docs" / "accelerate"
TWO = LaunchSettings(processes=2, threads_per_process=1)
# batch_size 5 over 2 processes: shares of 3 and 2 rankings, so the loss weighting is exercised.
REWARD = RewardConfig(epochs=2, batch_size=5, learning_rate=1e-3, eval_fraction=0.15)


@pytest.mark.parametrize("weighted", [False, True], ids=["equal weights", "uneven weights"])
def test_the_reward_model_in_two_processes_follows_the_one_process_loss_curve(
    tiny_model_dir, tmp_path, weighted
):
    examples = preference_data(30)
    if weighted:  # a share's part of the batch's weight is not its part of the batch's rankings
        examples = [replace(e, weight=0.25 + (i % 3) / 2) for i, e in enumerate(examples)]
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


def _launched(work_dir: Path) -> list[psutil.Process]:
    """The launcher and its trainers: this process's descendants that were given `work_dir` (a
    test session has others, such as the browser tests' Chromium and Playwright driver)."""
    processes = []
    for child in psutil.Process().children(recursive=True):
        try:
            if any(str(work_dir) in arg for arg in child.cmdline()):
                processes.append(child)
        except psutil.NoSuchProcess:
            pass
    return processes


def _all_gone(processes: list[psutil.Process]) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=5)
    return not alive


def test_a_killed_launch_fails_the_step_and_saves_no_model(tiny_model_dir, tmp_path):
    slow = RewardConfig(epochs=200, batch_size=2)
    launched: list[psutil.Process] = []

    def kill_the_launcher(step, total, metrics):
        if step == 2:
            launched.extend(_launched(tmp_path / "work"))  # the launcher and its 2 trainers
            launcher = next(p for p in launched if p.ppid() == os.getpid())
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
        launched.extend(_launched(tmp_path / "work"))
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


def test_a_launched_step_past_its_timeout_is_stopped(tiny_model_dir, tmp_path):
    settings = LaunchSettings(processes=2, timeout=2)
    launched: list[psutil.Process] = []
    with pytest.raises(TimeoutError, match="ran over 2 s"):
        launch_training(
            train_reward_model,
            (tiny_model_dir, preference_data(20), tmp_path / "rm", RewardConfig(epochs=200)),
            {},
            tmp_path / "work",
            settings,
            heartbeat=lambda fraction: launched.extend(_launched(tmp_path / "work")),
        )
    assert launched and _all_gone(launched)
    assert not (tmp_path / "rm").exists()


def test_a_failed_launch_says_what_the_failing_process_printed(tiny_model_dir, tmp_path):
    odd = PPOConfig(steps=1, batch_size=3, mini_batch_size=3)  # 3 prompts do not split in 2
    with pytest.raises(LaunchFailedError) as failed:
        launch_training(
            train_ppo,
            (tiny_model_dir, tiny_model_dir, ["a", "b", "c"], tmp_path / "policy", odd),
            {},
            tmp_path / "work",
            TWO,
        )
    message = str(failed.value)
    assert "[rank 0]" in message and "[rank 1]" in message and "[launcher]" in message
    # The processes' own error, not only the launcher's traceback.
    assert "ValueError: batch_size and mini_batch_size must be multiples of the 2" in message
    assert not (tmp_path / "policy").exists()


def test_a_process_that_aborts_after_the_step_completed_leaves_the_step_standing(
    tiny_model_dir, tmp_path, monkeypatch, caplog
):
    # Rank 1 aborts as it exits, after the step, as gloo can abort a process whose peer
    # closed its connections first.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import atexit, os\n"
        "if os.environ.get('LOCAL_RANK') == '1':\n"
        "    atexit.register(os.abort)\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    with caplog.at_level("WARNING", logger="rlhf_worker.launch"):
        result = launch_training(
            train_reward_model,
            (tiny_model_dir, preference_data(6), tmp_path / "rm", RewardConfig(epochs=1)),
            {},
            tmp_path / "work",
            TWO,
        )
    assert result["processes"] == 2
    load_reward_model(tmp_path / "rm")
    assert "the launched step completed, then accelerate launch exited with 1" in caplog.text
    assert "SIGABRT" in caplog.text


def test_a_launched_step_runs_only_training_functions(tmp_path):
    with pytest.raises(ValueError, match="not a training function"):
        launch_training(print, (), {}, tmp_path / "work", TWO)


def test_ppo_in_two_processes_changes_the_policy_and_agrees_with_one_process(
    tiny_model_dir, tmp_path
):
    prompts = [f"Write a sentence about topic {i}." for i in range(8)]
    config = PPOConfig(steps=2, batch_size=8, mini_batch_size=4, ppo_epochs=1, max_new_tokens=8)
    args = (tiny_model_dir, tiny_model_dir, prompts)
    alone = train_ppo(*args, tmp_path / "one", config)
    launched = launch_training(
        train_ppo, (*args, tmp_path / "two", config), {}, tmp_path / "work", TWO
    )
    assert (alone["processes"], launched["processes"]) == (1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # one policy each
    name = "model.layers.0.self_attn.q_proj.weight"
    before = load_causal_lm(tiny_model_dir, device=torch.device("cpu")).state_dict()[name]
    after = load_causal_lm(tmp_path / "two", device=torch.device("cpu")).state_dict()[name]
    assert not torch.equal(before, after)
    # Each process samples its own 4 responses, so rollouts differ from the 8 of one process;
    # figures of the global batch that do not hang on the samples agree.
    # Measured (seed 0): entropy 6.9027 vs 6.9022, value_loss 0.664 vs 0.656, mean_reward
    # -0.119 vs -0.110; the tolerances leave room for other samples, not for a wrong mean.
    first, first_alone = launched["steps"][0], alone["steps"][0]
    assert abs(first["kl"]) < 1e-5 and abs(first_alone["kl"]) < 1e-5
    assert first["entropy"] == pytest.approx(first_alone["entropy"], rel=1e-3)
    assert first["value_loss"] == pytest.approx(first_alone["value_loss"], rel=0.3)
    assert first["mean_reward"] == pytest.approx(first_alone["mean_reward"], abs=0.05)
    assert first["mean_response_length"] == pytest.approx(
        first_alone["mean_response_length"], rel=0.25
    )


def test_sft_in_two_processes_follows_the_one_process_loss_curve(tiny_model_dir, tmp_path):
    examples = [(p, a) for p, a in PAIRS for _ in range(2)] + [PAIRS[0]]  # 9: shares of 2 and 1
    config = SFTConfig(epochs=2, batch_size=3, learning_rate=1e-2)
    alone = sft_model_dir(tiny_model_dir, examples, tmp_path / "one", config)
    launched = launch_training(
        sft_model_dir,
        (tiny_model_dir, examples, tmp_path / "two", config),
        {},
        tmp_path / "work",
        TWO,
    )
    assert (alone["processes"], launched["processes"]) == (1, 2)
    # Weighted by answer tokens per process: the global batch's mean token loss, as one process.
    assert launched["losses"] == pytest.approx(alone["losses"], rel=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]


def test_dpo_on_transformers_trainer_in_two_processes_follows_one_process(tiny_model_dir, tmp_path):
    pairs = [(f"Name a colour {i}.", "blue", "I do not know" * (i % 3 + 1)) for i in range(16)]
    config = DPOTrainingConfig(epochs=1, batch_size=8, learning_rate=5e-3, max_length=64)
    alone = train_dpo(tiny_model_dir, pairs, tmp_path / "one", config)
    launched = launch_training(
        train_dpo, (tiny_model_dir, pairs, tmp_path / "two", config), {}, tmp_path / "work", TWO
    )
    assert (alone["processes"], launched["processes"]) == (1, 2)
    # per_device_batch_size: 4 + 4 make the 8 of one process, the same shuffled examples.
    assert launched["loss_first"] == pytest.approx(alone["loss_first"], rel=1e-4)
    assert launched["loss_last"] == pytest.approx(alone["loss_last"], rel=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    load_causal_lm(tmp_path / "two", device=torch.device("cpu"))


@pytest.mark.parametrize(
    "name", ["deepspeed-zero2", "deepspeed-zero3", "fsdp", "two-hosts-deepspeed"]
)
def test_the_documented_accelerate_configs_are_ones_accelerate_reads(name, tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    path = DOCS / f"{name}.yaml"
    config = load_config_from_file(str(path))
    assert config.distributed_type in ("DEEPSPEED", "FSDP") and config.num_processes >= 8
    command = launch_command(LaunchSettings(config_file=str(path)), tmp_path)
    assert command[command.index("--config_file") + 1] == str(path)
    assert command[-3:] == ["-m", "rlhf_worker.launch", str(tmp_path)]


@pytest.mark.parametrize("method", ["grpo"])  # RLOO runs the same function (train_online)
def test_grpo_trains_in_two_processes_and_saves_once(method, tiny_model_dir, tmp_path):
    config = OnlineRLConfig(
        steps=2, batch_size=4, num_generations=2, max_new_tokens=8, learning_rate=1e-3
    )
    prompts = [f"Question {i}" for i in range(8)]
    steps = []
    launched = launch_training(
        train_online,
        (method, tiny_model_dir, tiny_model_dir, prompts, tmp_path / "two", config),
        {},
        tmp_path / "work",
        TWO,
        on_step=lambda step, total, metrics: steps.append((step, total)),
    )
    assert launched["processes"] == 2 and launched["first_mean_reward"] is not None
    assert steps == [(1, 2), (2, 2)]  # the same optimizer steps as one process: 2 of 4 each
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two"]
    after = load_causal_lm(tmp_path / "two", device=torch.device("cpu")).state_dict()
    before = load_causal_lm(tiny_model_dir, device=torch.device("cpu")).state_dict()
    assert any(not torch.equal(after[name], before[name]) for name in before)
