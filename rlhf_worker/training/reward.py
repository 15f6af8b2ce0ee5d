"""The reward model: InstructGPT's K-wise ranking loss, its training loop, and scoring.

One batch element is one ranking: the K completions of a prompt go through the model together,
and the loss averages -log σ(r_better - r_worse) over all C(K,2) pairs of that ranking
(Ouyang et al. 2022, eq. 1). K forwards give C(K,2) comparisons, instead of 2·C(K,2) forwards
for the same pairs expanded one by one. Answers a labeler tied make no pair: a ranking with ties
averages over its pairs across groups only. Each ranking carries a weight (its labeler's trust,
when RewardConfig.trust_weighting is on): the batch loss is the weighted mean of the rankings'
losses.
"""

import hashlib
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_worker.training.artifacts import (
    load_reward_model,
    load_tokenizer,
    pick_device,
    save_model,
)
from rlhf_worker.training.configs import RewardConfig
from rlhf_worker.training.distributed import global_sums, local_share, make_accelerator
from rlhf_worker.training.finetune import add_lora, merge_lora, train_top_layers, unwrap
from rlhf_worker.training.format import Prompt, encode_exchange, pad_right, prompt_key
from rlhf_worker.training.rankings import RankedExample


def encode_for_reward(
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    completions: list[str],
    max_length: int,
) -> dict[str, torch.Tensor]:
    """What the reward model reads, right-padded: formatted prompt, completion, EOS.

    Long prompts lose their start (format.encode_exchange). The attention mask comes from the
    lengths, so a pad id equal to EOS cannot hide the EOS that ends an answer.
    """
    rows = [
        encode_exchange(tokenizer, p, c, max_length)[0]
        for p, c in zip(prompts, completions, strict=True)
    ]
    input_ids, attention_mask = pad_right(rows, tokenizer.pad_token_id)
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def token_scores(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """[B, T] the score head read at every position (PPO's critic reads it as values).

    transformers' sequence-classification forward picks "the last token that is not the pad"
    itself, which skips an EOS whose id is the pad's; reading the backbone and head directly
    leaves the choice of position to the caller.
    """
    inner = unwrap(model)
    hidden = inner.base_model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
    ).last_hidden_state
    return inner.score(hidden)[..., 0]


class TokenScores(torch.nn.Module):
    """token_scores as a module's forward, for accelerate to wrap: data-parallel training
    synchronises the gradients of what runs through the wrapped module's forward only."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return token_scores(self.model, input_ids, attention_mask, position_ids)


def sequence_scores(
    model: PreTrainedModel | TokenScores, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """[B] the reward of each sequence: the score at its last attended token (its EOS).

    `model` is a reward model, or a TokenScores (possibly wrapped by accelerate) around one.
    """
    last = attention_mask.shape[1] - 1 - attention_mask.flip(1).argmax(1)
    if isinstance(getattr(model, "module", model), TokenScores):  # .module: accelerate's wrapper
        scores = model(input_ids, attention_mask)
    else:
        scores = token_scores(model, input_ids, attention_mask)
    return scores[torch.arange(len(last), device=scores.device), last]


@torch.inference_mode()
def score_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    completions: list[str],
    batch_size: int = 16,
    max_length: int = 512,
) -> torch.Tensor:
    """Scalar rewards, shape [len(prompts)], for each (prompt, completion) pair (on CPU)."""
    model.eval()
    scores = []
    for start in range(0, len(prompts), batch_size):
        end = start + batch_size
        batch = encode_for_reward(tokenizer, prompts[start:end], completions[start:end], max_length)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        scores.append(sequence_scores(model, **batch).float().cpu())
    return torch.cat(scores) if scores else torch.zeros(0)


@torch.inference_mode()
def score_with(
    reward_dir: str | Path, prompts: list[Prompt], completions: list[str]
) -> list[float]:
    """The rewards a saved reward model gives each (prompt, completion) pair."""
    if not prompts:
        return []
    model = load_reward_model(reward_dir, device=pick_device())
    return score_completions(model, load_tokenizer(reward_dir), prompts, completions).tolist()


def _ranked_pairs(
    rewards: torch.Tensor, valid: torch.Tensor | None, groups: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(r_better - r_worse [B, C(K,2)] over column pairs i < j, which of them are pairs)."""
    k = rewards.shape[1]
    better, worse = torch.triu_indices(k, k, offset=1, device=rewards.device)
    margins = rewards[:, better] - rewards[:, worse]
    pair_valid = None if valid is None else valid[:, better] & valid[:, worse]
    if groups is not None:  # tied completions (the same group) make no pair
        apart = groups[:, better] < groups[:, worse]
        pair_valid = apart if pair_valid is None else pair_valid & apart
    return margins, pair_valid


def kwise_ranking_loss(
    rewards: torch.Tensor,
    valid: torch.Tensor | None = None,
    groups: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """InstructGPT's loss for a batch of rankings.

    rewards: [B, K], column i the reward of the completion ranked i-th (best first).
    valid:   [B, K] bool, False where a ranking has fewer than K completions (padding).
    groups:  [B, K] int, each completion's group (non-decreasing along a row; equal = tied);
             None for strict orders.
    weights: [B] >= 0, how much each ranking counts; None counts each the same.
    Each ranking's loss is the mean of -log σ(r_i - r_j) over its pairs i < j of different
    groups, so every prompt weighs the same whatever its K; the batch loss is their weighted
    mean, sum(w · loss) / sum(w), and 0 (no gradient) when every weight is 0.
    """
    margins, pair_valid = _ranked_pairs(rewards, valid, groups)
    pair_losses = -torch.nn.functional.logsigmoid(margins)  # [B, C(K,2)]
    if pair_valid is None:
        per_ranking = pair_losses.mean(1)
    else:
        pair_valid = pair_valid.to(rewards.dtype)
        per_ranking = (pair_losses * pair_valid).sum(1) / pair_valid.sum(1).clamp(min=1)
    if weights is None:
        return per_ranking.mean()
    total = weights.sum()
    return (per_ranking * weights).sum() / torch.where(total > 0, total, torch.ones_like(total))


def pairwise_accuracy(
    rewards: torch.Tensor, valid: torch.Tensor, groups: torch.Tensor | None = None
) -> tuple[int, int]:
    """(correctly ordered pairs, pairs) of a batch of rankings scored by the model."""
    margins, pair_valid = _ranked_pairs(rewards, valid, groups)
    correct = (margins > 0) & pair_valid
    return int(correct.sum()), int(pair_valid.sum())


def is_held_out(prompt: Prompt, fraction: float) -> bool:
    """A stable split by prompt: all rankings of one prompt fall on the same side."""
    digest = int(hashlib.sha256(prompt_key(prompt).encode("utf-8")).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < fraction


def _forward(model, tokenizer, batch: list[RankedExample], max_length: int, device=None):
    """(rewards, valid, groups), each [B, Kmax], for a batch of rankings, in one forward of all
    their completions."""
    kmax = max(len(example.completions) for example in batch)
    prompts = [example.prompt for example in batch for _ in example.completions]
    completions = [c for example in batch for c in example.completions]
    enc = encode_for_reward(tokenizer, prompts, completions, max_length)
    device = device or model.device
    flat = sequence_scores(model, **{k: v.to(device) for k, v in enc.items()})  # [sum K]
    rewards = flat.new_zeros(len(batch), kmax)
    valid = torch.zeros(len(batch), kmax, dtype=torch.bool, device=flat.device)
    groups = torch.zeros(len(batch), kmax, dtype=torch.long, device=flat.device)
    start = 0
    for row, example in enumerate(batch):
        k = len(example.completions)
        rewards[row, :k] = flat[start : start + k]
        valid[row, :k] = True
        groups[row, :k] = torch.tensor(example.tie_groups)
        start += k
    return rewards, valid, groups


@torch.no_grad()
def evaluate_reward_model(
    model,
    tokenizer,
    examples: list[RankedExample],
    config: RewardConfig,
    accelerator: Accelerator | None = None,
) -> dict:
    """Held-out loss, pairwise accuracy and the scale of the rewards, every ranking counted
    alike (the weights are for training).

    With an accelerator, each process scores its share of `examples` and every process
    returns the figures of the whole set.
    """
    model.eval()
    if accelerator is not None:
        with accelerator.split_between_processes(examples) as share:
            examples = list(share)
    loss_sum = correct = pairs = 0.0
    all_rewards: list[float] = []
    for start in range(0, len(examples), config.batch_size):
        batch = examples[start : start + config.batch_size]
        rewards, valid, groups = _forward(model, tokenizer, batch, config.max_length)
        loss_sum += float(kwise_ranking_loss(rewards, valid, groups)) * len(batch)
        c, n = pairwise_accuracy(rewards, valid, groups)
        correct, pairs = correct + c, pairs + n
        all_rewards += rewards[valid].float().cpu().tolist()
    count = len(examples)
    if accelerator is not None:
        loss_sum, correct, pairs, count = global_sums(accelerator, loss_sum, correct, pairs, count)
        all_rewards = gather_object(all_rewards) if accelerator.num_processes > 1 else all_rewards
    if not pairs:
        return {"eval_accuracy": None, "eval_loss": None, "eval_pairs": 0}
    scores = torch.tensor(all_rewards)
    return {
        "eval_accuracy": correct / pairs,
        "eval_loss": loss_sum / count,
        "eval_pairs": int(pairs),
        "reward_mean": float(scores.mean()),
        "reward_std": float(scores.std()) if len(scores) > 1 else 0.0,
    }


def _train_step(accelerator, scorer, optimizer, tokenizer, batch, config) -> dict:
    """One optimizer step on a global batch of rankings (their weights sum to more than 0);
    its weighted loss and its accuracy over the batch."""
    share, share_part = local_share(accelerator, batch)
    counted = share_part > 0  # a stand-in example of an empty share counts nowhere
    share_weight = sum(e.weight for e in share) * counted
    batch_weight = sum(e.weight for e in batch)
    rewards, valid, groups = _forward(
        scorer, tokenizer, share, config.max_length, accelerator.device
    )
    weights = torch.tensor([e.weight for e in share], dtype=rewards.dtype, device=rewards.device)
    loss = kwise_ranking_loss(rewards, valid, groups, weights)  # the share's weighted mean
    optimizer.zero_grad(set_to_none=True)
    # Scaled by the share's part of the batch's weight, times N (accelerate averages the N
    # gradients): the gradient of the global batch's weighted mean (distributed.local_share,
    # which this is when every weight is 1).
    accelerator.backward(loss * share_weight * accelerator.num_processes / batch_weight)
    accelerator.clip_grad_norm_(scorer.parameters(), config.max_grad_norm)
    optimizer.step()
    correct, pairs = pairwise_accuracy(rewards.detach(), valid, groups)
    loss_sum, correct, pairs = global_sums(
        accelerator, loss.item() * share_weight, correct * counted, pairs * counted
    )
    return {"loss": loss_sum / batch_weight, "accuracy": correct / pairs}


def train_reward_model(
    base_dir: str | Path,
    examples: list[RankedExample],
    out_dir: str | Path,
    config: RewardConfig,
    on_step: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Train a reward model from `base_dir` (the policy) on rankings; save it to `out_dir`.

    A plain loop rather than a transformers Trainer: a batch element is a whole ranking of
    variable K, the loss needs its grouping, and the loop stays short enough to read at once.
    Under `accelerate launch` every process runs this with the same arguments: each takes its
    share of every batch of `batch_size` rankings (distributed.local_share), so N processes
    train on the same global batches as one; the main process saves the model.
    """
    started = time.monotonic()
    accelerator = make_accelerator()
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)  # noqa: S311 (shuffling, not security)
    # Every ranking with at least two groups (one with everything tied compares nothing);
    # held out whatever its weight, trained on when its weight is above 0.
    examples = [e for e in examples if len(set(e.tie_groups)) >= 2]
    split = [(e, is_held_out(e.prompt, config.eval_fraction)) for e in examples]
    held_out = [e for e, out in split if out]
    weights = [e.weight for e, out in split if not out]
    train = [e for e, out in split if not out and e.weight > 0]
    if not train:
        raise ValueError(
            "no training rankings (every prompt was held out, had K < 2, or had weight 0)"
        )

    tokenizer = load_tokenizer(base_dir)
    tokenizer.padding_side = "right"
    model = load_reward_model(base_dir, device=accelerator.device, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    if config.gradient_checkpointing:
        model.activation_checkpointing_enable()
    if config.lora_r > 0:
        model = add_lora(model, config.lora_r, config.lora_alpha, "SEQ_CLS", config.top_layers)
    else:
        train_top_layers(model, config.top_layers)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    scorer, optimizer = accelerator.prepare(TokenScores(model), optimizer)
    steps_per_epoch = -(-len(train) // config.batch_size)
    total = steps_per_epoch * config.epochs
    history = []
    for _ in range(config.epochs):
        rng.shuffle(train)  # the same order in every process: the same seed
        scorer.train()
        for start in range(0, len(train), config.batch_size):
            batch = train[start : start + config.batch_size]
            metrics = _train_step(accelerator, scorer, optimizer, tokenizer, batch, config)
            history.append({"step": len(history) + 1, **metrics})
            if on_step:
                on_step(len(history), total, history[-1])

    metrics = {
        "config": asdict(config),
        "processes": accelerator.num_processes,
        "train_rankings": len(train),
        "held_out_rankings": len(held_out),
        "train_pairs": sum(
            a < b for e in train for a, b in itertools.combinations(e.tie_groups, 2)
        ),
        # How much the least and the average training ranking counted (1.0 unweighted).
        "trust_weighting": config.trust_weighting,
        "ranking_weight_min": min(weights),
        "ranking_weight_mean": sum(weights) / len(weights),
        "steps": history,
        "train_loss_first": history[0]["loss"],
        "train_loss_last": history[-1]["loss"],
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        **evaluate_reward_model(model, tokenizer, held_out, config, accelerator),
    }
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_model(merge_lora(model), tokenizer, out_dir)
    accelerator.wait_for_everyone()  # the model is on disk before any process returns
    metrics["seconds"] = time.monotonic() - started
    return metrics
