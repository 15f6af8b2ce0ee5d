"""RLOO and GRPO from TRL 1.16, against the round's reward model: the alternatives to our PPO.

Both sample several completions per prompt and use the others' rewards as the baseline (leave one
out for RLOO, the group mean and std for GRPO), so they need no critic. The reward model scores a
completion exactly as in PPO (reward.score_completions), through a TRL reward function.
"""

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

from rlhf_worker.training.artifacts import (
    load_causal_lm,
    load_reward_model,
    load_tokenizer,
)
from rlhf_worker.training.configs import OnlineRLConfig
from rlhf_worker.training.format import Prompt, format_prompt
from rlhf_worker.training.reward import score_completions
from rlhf_worker.training.trl_support import (
    StepReporter,
    per_device_batch_size,
    save_trained_model,
    trl_run_args,
)

TRAINERS = {"rloo": (RLOOConfig, RLOOTrainer), "grpo": (GRPOConfig, GRPOTrainer)}


def train_online(
    method: str,
    policy_dir: str | Path,
    reward_dir: str | Path,
    prompts: list[Prompt],
    out_dir: str | Path,
    config: OnlineRLConfig,
    on_step: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Improve the policy in `policy_dir` with RLOO or GRPO (`method`); save it to `out_dir`."""
    started = time.monotonic()
    config_cls, trainer_cls = TRAINERS[method]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(policy_dir)
    tokenizer.padding_side = "left"
    reward_model = load_reward_model(reward_dir, device=device)
    reward_tokenizer = load_tokenizer(reward_dir)
    # TRL hands the reward function the formatted prompt; the reward model formats its own.
    raw_prompt = {format_prompt(tokenizer, p): p for p in prompts}

    def reward_model_score(prompts: list[str], completions: list[str], **kwargs) -> list[float]:
        originals = [raw_prompt.get(p, p) for p in prompts]
        return score_completions(reward_model, reward_tokenizer, originals, completions).tolist()

    with tempfile.TemporaryDirectory() as scratch:
        args = config_cls(
            **trl_run_args(scratch),
            max_steps=config.steps,
            per_device_train_batch_size=per_device_batch_size(config.batch_size),
            num_generations=config.num_generations,
            max_completion_length=config.max_new_tokens,
            learning_rate=config.learning_rate,
            beta=config.beta,
            temperature=config.temperature,
            seed=config.seed,
        )
        trainer = trainer_cls(
            model=load_causal_lm(policy_dir, device=device),
            reward_funcs=reward_model_score,
            args=args,
            train_dataset=Dataset.from_list([{"prompt": p} for p in raw_prompt]),
            processing_class=tokenizer,
            callbacks=[StepReporter(on_step)] if on_step else [],
        )
        trainer.train()
        history = [h for h in trainer.state.log_history if "loss" in h]
    save_trained_model(trainer, tokenizer, out_dir)
    first, last = (history[0], history[-1]) if history else ({}, {})
    return {
        "method": method,
        "config": asdict(config),
        "first_mean_reward": first.get("reward"),
        "last_mean_reward": last.get("reward"),
        "steps": history,
        "seconds": time.monotonic() - started,
        "processes": trainer.accelerator.num_processes,
    }
