"""What our TRL-based trainers (DPO, RLOO, GRPO) share: run settings and progress reporting."""

from collections.abc import Callable

import torch
from transformers import TrainerCallback


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
