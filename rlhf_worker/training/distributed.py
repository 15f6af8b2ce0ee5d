"""Data parallelism for our own loops (K-wise reward, PPO, SFT), on accelerate.

One process (the worker's in-process step) or N under `accelerate launch` (rlhf_worker/launch.py):
the same code. Each process takes a contiguous share of every global batch, whole examples only
(a ranking is never split), and weighs its loss by its share so that the gradients accelerate
averages across processes are exactly the gradients of the global batch's mean loss: N processes
follow the one-process loss curve, up to the order of float additions.
"""

from collections.abc import Sequence
from typing import TypeVar

import torch
from accelerate import Accelerator

T = TypeVar("T")


def make_accelerator() -> Accelerator:
    """The run's Accelerator: the GPU of this process when there is one, else the CPU.

    Under `accelerate launch` it joins the process group the launcher set up (NCCL on GPUs,
    gloo on CPUs); in a plain process it is a single-process no-op wrapper.
    """
    return Accelerator(cpu=not torch.cuda.is_available())


def local_share(accelerator: Accelerator, batch: Sequence[T]) -> tuple[list[T], float]:
    """(this process's examples of a global batch, the weight of its mean loss).

    The weight is len(share) * N / len(batch): the average of the N weighted means is the mean
    over the global batch. A process whose share is empty (a last batch smaller than N) gets the
    batch's first example with weight 0, so that it still runs the forward and backward passes
    the gradient all-reduce waits for.
    """
    with accelerator.split_between_processes(list(batch)) as share:
        share = list(share)
    if not share:
        return list(batch[:1]), 0.0
    return share, len(share) * accelerator.num_processes / len(batch)


def global_sums(accelerator: Accelerator, *values: float) -> list[float]:
    """Each value summed over the processes (the same list in every process)."""
    local = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(local, reduction="sum").tolist()
