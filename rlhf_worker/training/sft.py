"""Supervised fine-tuning on (prompt, answer) pairs, InstructGPT's first step.

Each example is the formatted prompt (format.py: the chat template when the tokenizer has one) +
answer + EOS. The loss is the usual next-token
cross-entropy, but only on the answer and its EOS: the prompt's labels are -100, so the model
learns to answer instructions, not to write them. Batches are right-padded; the loss is the
mean over all answer tokens of a batch.
"""

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_worker.training.artifacts import load_causal_lm, load_tokenizer, save_model
from rlhf_worker.training.configs import SFTConfig
from rlhf_worker.training.distributed import global_sums, local_share, make_accelerator
from rlhf_worker.training.format import Prompt, encode_exchange, pad_right

IGNORE_INDEX = -100  # cross_entropy's ignore_index: label of tokens that carry no loss

StepCallback = Callable[[int, int, dict[str, float]], None]


def lr_factor(step: int, total: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Learning-rate multiplier at optimizer step `step` (from 0): linear warm-up, cosine decay."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def tokenize_example(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, answer: str, max_length: int
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one example; labels are -100 on the prompt.

    Prompt and answer are tokenized apart so the prompt's tokens are exactly those generation
    conditions on; a long prompt loses its start, and only an answer longer than max_length by
    itself is cut (and loses its EOS).
    """
    input_ids, n_prompt = encode_exchange(tokenizer, prompt, answer, max_length)
    labels = [IGNORE_INDEX] * n_prompt + input_ids[n_prompt:]
    return input_ids, labels


def collate(
    tokenizer: PreTrainedTokenizerBase, batch: list[tuple[list[int], list[int]]]
) -> dict[str, torch.Tensor]:
    """Right-pad tokenized examples into input_ids, attention_mask and labels tensors."""
    input_ids, attention_mask = pad_right([ids for ids, _ in batch], tokenizer.pad_token_id)
    labels, _ = pad_right([labs for _, labs in batch], IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _loss_tokens(example: tuple[list[int], list[int]]) -> int:
    """The tokens an example's loss averages over: labels after the first (the model shifts)."""
    return sum(label != IGNORE_INDEX for label in example[1][1:])


def _train_step(accelerator: Accelerator, model, optimizer, tokenizer, batch, config) -> float:
    """One optimizer step on a global batch; its loss, the mean over all its answer tokens.

    Each process's mean is weighted by its share of the batch's answer tokens, so the gradient
    accelerate averages is that of the global mean."""
    share, share_weight = local_share(accelerator, batch)
    # A stand-in example (share_weight 0) runs forward and backward but counts nowhere.
    tokens = sum(_loss_tokens(e) for e in share) if share_weight else 0
    total_tokens = sum(_loss_tokens(e) for e in batch)
    weight = tokens * accelerator.num_processes / total_tokens
    inputs = {k: v.to(accelerator.device) for k, v in collate(tokenizer, share).items()}
    loss = model(**inputs).loss
    optimizer.zero_grad(set_to_none=True)
    accelerator.backward(loss * weight)
    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    (loss_sum,) = global_sums(accelerator, loss.item() * tokens)
    return loss_sum / total_tokens


def train_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[tuple[Prompt, str]],
    config: SFTConfig,
    on_step: StepCallback | None = None,
    accelerator: Accelerator | None = None,
) -> dict:
    """Fine-tune `model` in place on (prompt, answer) pairs; returns loss and timing metrics.

    `on_step(step, total_steps, {"loss", "lr"})` is called after every optimizer step (step
    counts from 1). Under `accelerate launch` each process takes its share of every batch
    (distributed.local_share).
    """
    started = time.monotonic()
    accelerator = accelerator or make_accelerator()
    tokenized = [tokenize_example(tokenizer, p, a, config.max_length) for p, a in examples]
    # An example whose answer was cut off entirely would make an all-ignored batch (NaN loss).
    tokenized = [t for t in tokenized if any(label != IGNORE_INDEX for label in t[1])]
    if not tokenized:
        raise ValueError("train_sft needs at least one example with answer tokens")

    steps_per_epoch = math.ceil(len(tokenized) / config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    prepared, optimizer = accelerator.prepare(model, optimizer)
    order_rng = torch.Generator().manual_seed(config.seed)
    model.train()
    losses: list[float] = []
    for _ in range(config.epochs):
        order = torch.randperm(len(tokenized), generator=order_rng).tolist()
        for start in range(0, len(order), config.batch_size):
            step = len(losses)
            lr = config.learning_rate * lr_factor(
                step, total, config.warmup_steps, config.min_lr_ratio
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = [tokenized[i] for i in order[start : start + config.batch_size]]
            losses.append(_train_step(accelerator, prepared, optimizer, tokenizer, batch, config))
            if on_step is not None:
                on_step(step + 1, total, {"loss": losses[-1], "lr": lr})
    model.eval()
    return {
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "steps": len(losses),
        "losses": losses,
        "examples": len(tokenized),
        "processes": accelerator.num_processes,
        "seconds": time.monotonic() - started,
        "config": asdict(config),
    }


def sft_model_dir(
    model_dir: str | Path,
    examples: list[tuple[Prompt, str]],
    out_dir: str | Path,
    config: SFTConfig,
    on_step: StepCallback | None = None,
) -> dict:
    """Load the causal LM in `model_dir`, fine-tune it on `examples`, save it to `out_dir`.

    Training runs in float32 (a GPU's bf16 weights would lose small updates); the save is
    atomic, and a no-op when `out_dir` already exists.
    """
    accelerator = make_accelerator()
    tokenizer = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir, device=accelerator.device, dtype=torch.float32)
    metrics = train_sft(model, tokenizer, examples, config, on_step, accelerator)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_model(model, tokenizer, out_dir)
    accelerator.wait_for_everyone()  # the model is on disk before any process returns
    return metrics
