"""DPO (Rafailov et al. 2023) on the labelers' comparisons, with TRL's DPOTrainer.

The cheap alternative to reward model + PPO: the policy learns from (prompt, chosen, rejected)
directly, against a frozen copy of itself as the reference.
"""

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase
from trl import DPOConfig, DPOTrainer

from rlhf_worker.training.artifacts import load_causal_lm, load_tokenizer
from rlhf_worker.training.configs import DPOTrainingConfig
from rlhf_worker.training.format import Prompt, encode_answer, format_prompt
from rlhf_worker.training.trl_support import (
    StepReporter,
    per_device_batch_size,
    save_trained_model,
    trl_run_args,
)

# One comparison: (prompt, chosen completion, rejected completion).
Pair = tuple[Prompt, str, str]


def _keep_prompt_end(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, answers: tuple[str, str], max_length: int
) -> str:
    """The formatted prompt, its start cut so that it and the longer answer fit max_length.

    TRL cuts an over-long sequence at its end (the answer); cutting the prompt here first keeps
    both answers whole, as the reward model does.
    """
    text = format_prompt(tokenizer, prompt)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    longest = max(len(encode_answer(tokenizer, a)) for a in answers)
    keep = max(max_length - longest, 0)
    return text if len(ids) <= keep else tokenizer.decode(ids[len(ids) - keep :])


def train_dpo(
    policy_dir: str | Path,
    pairs: list[Pair],
    out_dir: str | Path,
    config: DPOTrainingConfig,
    on_step: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Fine-tune the policy in `policy_dir` with DPO on `pairs`; save it to `out_dir`."""
    started = time.monotonic()
    if not pairs:
        raise ValueError("DPO needs at least one comparison")
    tokenizer = load_tokenizer(policy_dir)
    model = load_causal_lm(policy_dir, device=torch.device("cpu"))
    dataset = Dataset.from_list(
        [
            {
                "prompt": _keep_prompt_end(tokenizer, p, (c, r), config.max_length),
                "chosen": c + tokenizer.eos_token,
                "rejected": r + tokenizer.eos_token,
            }
            for p, c, r in pairs
        ]
    )
    with tempfile.TemporaryDirectory() as scratch:
        args = DPOConfig(
            **trl_run_args(scratch),
            num_train_epochs=config.epochs,
            per_device_train_batch_size=per_device_batch_size(config.batch_size),
            learning_rate=config.learning_rate,
            beta=config.beta,
            max_length=config.max_length,
            seed=config.seed,
        )
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[StepReporter(on_step)] if on_step else [],
        )
        result = trainer.train()
        history = [h for h in trainer.state.log_history if "loss" in h]
    save_trained_model(trainer, tokenizer, out_dir)
    return {
        "config": asdict(config),
        "pairs": len(pairs),
        "train_loss": float(result.training_loss),
        "loss_first": history[0]["loss"] if history else None,
        "loss_last": history[-1]["loss"] if history else None,
        "reward_accuracy_last": history[-1].get("rewards/accuracies") if history else None,
        "seconds": time.monotonic() - started,
        "processes": trainer.accelerator.num_processes,
    }
