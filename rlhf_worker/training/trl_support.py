"""What our TRL-based trainers (DPO, RLOO, GRPO) share: run settings and progress reporting."""

import os
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback

from rlhf_worker.training.artifacts import save_model


def trl_run_args(output_dir: str) -> dict:
    """Trainer arguments for a run inside a worker step: no checkpoints, no tracker, logs every
    step. TRL defaults to bf16 and activation checkpointing; both only make sense on a GPU."""
    use_cuda = torch.cuda.is_available()
    return {
        "output_dir": output_dir,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "bf16": use_cuda,
        "activation_checkpointing": False,
        "use_cpu": not use_cuda,
        "disable_tqdm": True,
    }


class StepReporter(TrainerCallback):
    """Passes each logged training step of a TRL trainer to `on_step(step, total, metrics)`."""

    def __init__(self, on_step: Callable[[int, int, dict], None]) -> None:
        self.on_step = on_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            metrics = {k: float(v) for k, v in logs.items() if isinstance(v, int | float)}
            self.on_step(state.global_step, state.max_steps, {"step": state.global_step, **metrics})


def per_device_batch_size(batch_size: int) -> int:
    """A Trainer's per-device batch for a global batch of `batch_size` over the launched
    processes (WORLD_SIZE, set by accelerate launch / torchrun; 1 in a worker's own process),
    so N processes train on the batches one process would."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if batch_size % processes:
        raise ValueError(f"batch_size {batch_size} is not a multiple of the {processes} processes")
    return batch_size // processes


def save_trained_model(
    trainer: Trainer, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path
) -> None:
    """Save the trained model once, from the main process; the others wait until it is there.

    accelerator.get_state_dict is collective: under ZeRO-3 or FSDP it gathers the full weights
    from the shards of every process; under plain data parallelism it is the model's own."""
    accelerator = trainer.accelerator
    state_dict = accelerator.get_state_dict(trainer.model)
    if accelerator.is_main_process:
        save_model(accelerator.unwrap_model(trainer.model), tokenizer, out_dir, state_dict)
    accelerator.wait_for_everyone()
