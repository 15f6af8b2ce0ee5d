"""PPO against a reward model, InstructGPT's third step, in one file.

TRL removed its PPOTrainer, so this is ours. The formulation follows InstructGPT (Ouyang et al.
2022) and TRL's PPOTrainer (v0.12 - v1.12):

- Rollout: the policy samples a response for each prompt; everything after the first EOS is
  masked out. The frozen reward model scores (prompt, response); answers that never end lose
  `missing_eos_penalty`.
- Scores are normalised by their running mean and std over the run (`normalize_rewards`), so
  `kl_coef` means the same against any reward model; then the missing-EOS penalty and the
  optional length control (`length_penalty`) apply.
- Reward per response token: -kl_coef * (log π(a|s) - log π_ref(a|s)) and -anchor_kl_coef *
  (log π(a|s) - log π_anchor(a|s)), plus the score on the last token. The KL to the round's
  starting policy bounds each round's step; the KL to the anchor (v1 or the SFT policy) bounds
  the drift that adds up across rounds, so the policy cannot walk into text that merely fools
  a reward model one round at a time.
- A critic (the reward model's backbone and score head, read at every position) gives a value
  per token; GAE turns rewards and values into advantages and returns.
- `ppo_epochs` passes over shuffled minibatches minimise the clipped surrogate loss plus
  `vf_coef` times the clipped value loss.

Memory and compute switches: `lora_r` trains LoRA adapters on the policy and the critic instead
of their weights, so the reference policy is the same model with its adapters off rather than a
second copy; `top_layers` trains only their last N layers (the demo's CPU setting: the backward
pass stops there); `gradient_checkpointing` recomputes layer activations in the backward pass.

Shapes: B is the number of rollouts, P the (left-padded) prompt length, T the response length.
Position t of the response is predicted from position P - 1 + t of the full sequence.
"""

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers import GenerationConfig, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer

from rlhf_worker.training.artifacts import (
    load_causal_lm,
    load_reward_model,
    load_tokenizer,
    peak_memory_metrics,
    reset_peak_memory,
    save_model,
)
from rlhf_worker.training.configs import PPOConfig
from rlhf_worker.training.distributed import global_sums, make_accelerator
from rlhf_worker.training.finetune import add_lora, merge_lora, train_top_layers
from rlhf_worker.training.format import Prompt, encode_prompt
from rlhf_worker.training.reward import TokenScores, score_completions

RewardFn = Callable[[list[Prompt], list[str]], list[float]]
StepCallback = Callable[[int, int, dict[str, float]], None]


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def _masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, accelerator: Accelerator | None = None
) -> torch.Tensor:
    """x normalised to mean 0 and std 1 over its masked entries, in every process together."""
    if accelerator is None or accelerator.num_processes == 1:
        mean = _masked_mean(x, mask)
        var = _masked_mean((x - mean) ** 2, mask)
        n = mask.sum()
    else:
        total, n = global_sums(accelerator, (x * mask).sum().item(), mask.sum().item())
        mean = total / max(n, 1)
        (squares,) = global_sums(accelerator, (((x - mean) ** 2) * mask).sum().item())
        var = torch.tensor(squares / max(n, 1), dtype=x.dtype, device=x.device)
    if n > 1:
        var = var * n / (n - 1)  # unbiased, as TRL
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over [B, T] tensors; returns (advantages, returns).

    mask is 1 on response tokens and 0 on padding after the response. Padding carries neither
    reward nor value, so the value after the last real token is 0 (the episode ends there).
    Both outputs are 0 on padding.
    """
    mask = mask.to(rewards.dtype)
    rewards, values = rewards * mask, values * mask
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, advantages + values


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, mean over masked tokens, and the fraction of clipped tokens.

    All inputs are [B, T]. The loss is the larger (pessimistic) of -A·r and -A·clip(r), with
    r = π/π_old; a token counts as clipped when the clipped term is the one taken.
    """
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = _masked_mean(torch.max(unclipped, clipped), mask)
    clip_fraction = _masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
    return loss, clip_fraction


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> torch.Tensor:
    """Clipped value loss: 0.5 * masked mean of max((v - R)², (clip(v, v_old ± c) - R)²)."""
    mask = mask.to(values.dtype)
    clipped = torch.clamp(values, old_values - cliprange_value, old_values + cliprange_value)
    losses = torch.max((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * _masked_mean(losses, mask)


def response_mask(responses: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """[B, T] bool: True on each response's tokens up to and including its first EOS.

    generate pads a finished response with the pad id, which may be EOS itself: counting EOS
    tokens, not looking for the pad, says where a response ends, and its EOS stays in.
    """
    is_eos = (responses == eos_token_id).long()
    return (is_eos.cumsum(1) - is_eos) == 0


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    # Left padding shifts the prompt right; positions must count real tokens only, as generate
    # does, or the forward pass would not compute the distribution the tokens were sampled from.
    return (attention_mask.cumsum(1) - 1).clamp(min=0)


def _policy_logits(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_len: int,
    temperature: float,
) -> torch.Tensor:
    """[B, T, V] logits of the response tokens, tempered like the sampling distribution.

    `logits_to_keep` has the LM head project only the positions that predict response tokens
    (the last prompt token onwards), not the whole prompt: the head is a large share of a small
    model's compute, and a [B, P, V] block of prompt logits would be thrown away.
    """
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=_position_ids(attention_mask),
        use_cache=False,
        logits_to_keep=input_ids.shape[1] - prompt_len + 1,
    )
    return out.logits[:, :-1].float() / (temperature + 1e-7)


def _values(
    critic: TokenScores, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int
) -> torch.Tensor:
    """[B, T] value of each response token's state: the score head read at every position.

    `critic` is the critic's TokenScores, or accelerate's wrapper around it (in the updates)."""
    scores = critic(input_ids, attention_mask, _position_ids(attention_mask))
    return scores[:, prompt_len - 1 : -1].float()


def _token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def _with_lora(policy: PreTrainedModel, config: PPOConfig) -> PreTrainedModel:
    """The policy with trainable LoRA adapters on its linear layers, its weights frozen."""
    return add_lora(policy, config.lora_r, config.lora_alpha, "CAUSAL_LM", config.top_layers).eval()


@contextmanager
def _as_reference(
    policy: PreTrainedModel, ref_policy: PreTrainedModel | None
) -> Iterator[PreTrainedModel]:
    """The reference policy: its own copy, or (LoRA) the policy with its adapters off."""
    if ref_policy is not None:
        yield ref_policy
    else:
        with policy.disable_adapter():
            yield policy


@contextmanager
def _activation_checkpointing(models: list[PreTrainedModel], enabled: bool) -> Iterator[None]:
    """Checkpoint the layers of `models` inside the block, when enabled.

    transformers checkpoints a layer only while layer.training is set. Setting it on the layers
    alone keeps their dropouts in eval mode, and only here, so rollouts keep their KV cache.
    """
    if not enabled:
        yield
        return
    modules = [m for model in models for m in model.modules()]
    layers = [m for m in modules if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        layer.training = True
    try:
        yield
    finally:
        for layer in layers:
            layer.training = False


@dataclass
class _Models:
    """What a PPO run holds: the trained policy and critic, and the frozen judges.

    `policy` and `critic` are the models themselves (rollouts read them); `policy_train` and
    `critic_train` are the same after accelerator.prepare, which the updates run through.
    """

    policy: PreTrainedModel
    ref_policy: PreTrainedModel | None  # None with LoRA: the policy with its adapters off
    anchor: PreTrainedModel | None  # None when the anchor is the reference policy
    critic: TokenScores
    reward_model: PreTrainedModel | None  # None when a reward_fn scores
    policy_train: torch.nn.Module | None = None
    critic_train: torch.nn.Module | None = None


def _load_models(
    policy_dir: str | Path,
    reward_dir: str | Path,
    anchor_dir: str | Path | None,
    config: PPOConfig,
    with_reward_model: bool,
    device: torch.device,
) -> _Models:
    """Policy and critic in float32 (PPO's ratios and small value updates are fragile in half
    precision), eval() everywhere: no dropout, so rollout and update forwards agree exactly."""

    def frozen_lm(path: str | Path) -> PreTrainedModel:
        return load_causal_lm(path, device=device, dtype=torch.float32).eval().requires_grad_(False)

    policy = load_causal_lm(policy_dir, device=device, dtype=torch.float32).eval()
    if config.gradient_checkpointing:
        policy.activation_checkpointing_enable()
    ref_policy = None
    if config.lora_r > 0:
        policy = _with_lora(policy, config)
    else:
        train_top_layers(policy, config.top_layers)
        ref_policy = frozen_lm(policy_dir)
    separate_anchor = anchor_dir is not None and Path(anchor_dir) != Path(policy_dir)
    anchor = frozen_lm(anchor_dir) if separate_anchor and config.anchor_kl_coef else None
    critic = load_reward_model(reward_dir, device=device, dtype=torch.float32).eval()
    if config.gradient_checkpointing:
        critic.activation_checkpointing_enable()
    if config.lora_r > 0:
        critic = add_lora(
            critic, config.lora_r, config.lora_alpha, "SEQ_CLS", config.top_layers
        ).eval()
    else:
        train_top_layers(critic, config.top_layers)
    reward_model = None
    if with_reward_model:
        reward_model = load_reward_model(reward_dir, device=device).eval().requires_grad_(False)
    return _Models(policy, ref_policy, anchor, TokenScores(critic), reward_model)


@dataclass
class _Rollout:
    """One batch of sampled responses and everything scored on it. [B, T] unless noted."""

    prompts: list[Prompt]
    input_ids: torch.Tensor  # [B, P + T]
    attention_mask: torch.Tensor  # [B, P + T]
    prompt_len: int
    responses: torch.Tensor
    mask: torch.Tensor  # float: 1 on response tokens up to and including the first EOS
    has_eos: torch.Tensor  # [B] bool
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    anchor_logprobs: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor  # [B] the reward model's (or reward_fn's) raw scores


@torch.inference_mode()
def _rollout(
    models: _Models,
    tokenizer,
    batch_prompts: list[Prompt],
    generation_config: GenerationConfig,
    config: PPOConfig,
    reward_fn: RewardFn | None,
) -> _Rollout:
    """Sample a response per prompt, then score it under policy, references, critic and judge."""
    device = models.policy.device
    # Long prompts lose their beginning, never the template's assistant turn at the end.
    encoded = [encode_prompt(tokenizer, p)[-config.max_prompt_length :] for p in batch_prompts]
    enc = tokenizer.pad({"input_ids": encoded}, padding_side="left", return_tensors="pt").to(
        device
    )  # generation appends on the right
    prompt_ids, prompt_mask = enc["input_ids"], enc["attention_mask"]
    P = prompt_ids.shape[1]
    sequences = models.policy.generate(
        input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=generation_config
    )
    responses = sequences[:, P:]  # [B, T]; T <= max_new_tokens (stops when all ended)
    mask = response_mask(responses, tokenizer.eos_token_id)
    has_eos = (responses == tokenizer.eos_token_id).any(1)
    responses = responses.masked_fill(~mask, tokenizer.pad_token_id)
    input_ids = torch.cat([prompt_ids, responses], 1)
    attention_mask = torch.cat([prompt_mask, mask.long()], 1)

    def logprobs_under(model: PreTrainedModel) -> torch.Tensor:
        logits = _policy_logits(model, input_ids, attention_mask, P, config.temperature)
        return _token_logprobs(logits, responses)

    logits = _policy_logits(models.policy, input_ids, attention_mask, P, config.temperature)
    logprobs = _token_logprobs(logits, responses)
    probs = logits.softmax(-1)
    entropy = torch.logsumexp(logits, -1) - (probs * logits).sum(-1)
    del logits, probs
    with _as_reference(models.policy, models.ref_policy) as reference:
        ref_logprobs = logprobs_under(reference)
    anchor_logprobs = ref_logprobs if models.anchor is None else logprobs_under(models.anchor)
    values = _values(models.critic, input_ids, attention_mask, P)

    completions = tokenizer.batch_decode(responses, skip_special_tokens=True)
    if reward_fn is not None:
        scores = torch.tensor(reward_fn(batch_prompts, completions), dtype=torch.float32)
    else:
        scores = score_completions(
            models.reward_model,
            tokenizer,
            batch_prompts,
            completions,
            batch_size=config.reward_batch_size,
        )
    # Inference tensors cannot be saved for backward; the updates get clones.
    return _Rollout(
        prompts=batch_prompts,
        input_ids=input_ids.clone(),
        attention_mask=attention_mask.clone(),
        prompt_len=P,
        responses=responses.clone(),
        mask=mask.float(),
        has_eos=has_eos.clone(),
        logprobs=logprobs.clone(),
        ref_logprobs=ref_logprobs.clone(),
        anchor_logprobs=anchor_logprobs.clone(),
        entropy=entropy.clone(),
        values=values.clone(),
        scores=scores.to(device),
    )


class _RunningMoments:
    """Mean and std of every score seen so far in the run (Chan et al.'s parallel update)."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, x: torch.Tensor) -> None:
        n, mean = x.numel(), x.mean().item()
        m2 = ((x - mean) ** 2).sum().item()
        delta, total = mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.m2 += m2 + delta**2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / max(self.count - 1, 1))


def _shaped_scores(
    rollout: _Rollout,
    config: PPOConfig,
    moments: _RunningMoments,
    target_length: float,
    accelerator: Accelerator | None = None,
) -> torch.Tensor:
    """[B] the score PPO maximises: normalised, minus the missing-EOS and length penalties.

    The running moments are those of the global batch (every process's scores)."""
    scores = rollout.scores
    if config.normalize_rewards:
        moments.update(scores if accelerator is None else accelerator.gather(scores))
        scores = (scores - moments.mean) / (moments.std + 1e-6)
    scores = scores - config.missing_eos_penalty * (~rollout.has_eos).float()
    if config.length_penalty:
        lengths = rollout.mask.sum(1).clamp(min=1)
        scores = scores - config.length_penalty * (lengths / target_length).log().abs()
    return scores


def _advantages(
    rollout: _Rollout,
    scores: torch.Tensor,
    config: PPOConfig,
    accelerator: Accelerator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-token KL to the reference, advantages, returns), each [B, T]."""
    fmask = rollout.mask
    kl = (rollout.logprobs - rollout.ref_logprobs) * fmask  # per-token estimate of KL(π||π_ref)
    anchor_kl = (rollout.logprobs - rollout.anchor_logprobs) * fmask
    rewards = -config.kl_coef * kl - config.anchor_kl_coef * anchor_kl
    last = fmask.sum(1).long() - 1  # index of the final response token (the EOS if any)
    rewards[torch.arange(len(last), device=rewards.device), last] += scores
    advantages, returns = compute_gae(rewards, rollout.values, fmask, config.gamma, config.lam)
    if config.whiten_advantages:
        advantages = _masked_whiten(advantages, fmask, accelerator)
    return kl, advantages, returns


def _update(
    models: _Models,
    optimizer: torch.optim.Optimizer,
    rollout: _Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    config: PPOConfig,
    accelerator: Accelerator,
) -> dict[str, float]:
    """`ppo_epochs` passes of clipped policy and value updates over shuffled minibatches.

    With N processes each holds batch_size / N rollouts and takes mini_batch_size / N of them
    per update; the gradients are averaged over the processes.
    """
    r, P = rollout, rollout.prompt_len
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    losses: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "clip_fraction": []}
    B = len(r.prompts)
    mini_batch_size = config.mini_batch_size // accelerator.num_processes
    with _activation_checkpointing([models.policy, models.critic], config.gradient_checkpointing):
        for _ in range(config.ppo_epochs):
            perm = torch.randperm(B, device=r.input_ids.device)
            for start in range(0, B, mini_batch_size):
                idx = perm[start : start + mini_batch_size]
                ids, attn, mb_mask = r.input_ids[idx], r.attention_mask[idx], r.mask[idx]
                new_logits = _policy_logits(models.policy_train, ids, attn, P, config.temperature)
                new_logprobs = _token_logprobs(new_logits, r.responses[idx])
                new_values = _values(models.critic_train, ids, attn, P)
                pg_loss, clip_fraction = policy_loss(
                    new_logprobs, r.logprobs[idx], advantages[idx], mb_mask, config.cliprange
                )
                vf_loss = value_loss(
                    new_values, r.values[idx], returns[idx], mb_mask, config.cliprange_value
                )
                loss = pg_loss + config.vf_coef * vf_loss
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                losses["policy_loss"].append(pg_loss.item())
                losses["value_loss"].append(vf_loss.item())
                losses["clip_fraction"].append(clip_fraction.item())
    means = [sum(vals) / len(vals) for vals in losses.values()]
    if accelerator.num_processes > 1:  # the mean over every process's updates
        means = [v / accelerator.num_processes for v in global_sums(accelerator, *means)]
    return dict(zip(losses, means, strict=True))


def _step_metrics(
    accelerator: Accelerator,
    rollout: _Rollout,
    scores: torch.Tensor,
    kl: torch.Tensor,
    losses: dict[str, float],
) -> dict[str, float]:
    """One step's metrics over the global batch: per-rollout figures gathered from every
    process (each holds the same number of rollouts), entropy over all their tokens."""
    fmask = rollout.mask
    per_rollout = torch.stack(
        [
            rollout.scores,
            scores,
            kl.sum(1),
            ((rollout.logprobs - rollout.anchor_logprobs) * fmask).sum(1),
            fmask.sum(1),
            (~rollout.has_eos).float(),
        ],
        1,
    )
    reward, shaped, kl_sum, anchor_kl, length, no_eos = accelerator.gather(per_rollout).mean(0)
    entropy_sum, tokens = global_sums(
        accelerator, (rollout.entropy * fmask).sum().item(), fmask.sum().item()
    )
    return {
        "mean_reward": reward.item(),
        "mean_shaped_score": shaped.item(),
        "kl": kl_sum.item(),
        "anchor_kl": anchor_kl.item(),
        "entropy": entropy_sum / max(tokens, 1),
        **losses,
        "mean_response_length": length.item(),
        "no_eos_fraction": no_eos.item(),
    }


def train_ppo(
    policy_dir: str | Path,
    reward_dir: str | Path,
    prompts: list[Prompt],
    out_dir: str | Path,
    config: PPOConfig,
    on_step: StepCallback | None = None,
    reward_fn: RewardFn | None = None,
    anchor_dir: str | Path | None = None,
) -> dict:
    """Optimise the policy in `policy_dir` against the reward model in `reward_dir`.

    The reference policy is the starting policy (same directory); the anchor is `anchor_dir`
    (v1 or the SFT policy; none given, or the same directory, means the reference is the anchor).
    The critic starts from the reward model. `on_step(step, total_steps, metrics)` is called
    after every step (step counts from 1). `reward_fn(prompts, completions) -> scores`, when
    given, replaces the reward model's scores (for tests and hand-written preferences); the
    critic still starts from `reward_dir`.
    Metrics per step: mean_reward (the reward model's raw mean score), mean_shaped_score (what
    PPO maximises: normalised, after the missing-EOS and length penalties), kl and anchor_kl
    (means over rollouts of the summed per-token log-ratio to the reference and the anchor),
    entropy (per token), policy_loss, value_loss and clip_fraction (means over the step's
    updates), mean_response_length (tokens, EOS included) and no_eos_fraction.
    Saves the policy (causal LM only, LoRA adapters merged) to `out_dir` and returns a
    summary: first/last mean reward, final kl, the per-step metrics, seconds,
    tokens_per_second (response tokens sampled per second of the training loop),
    trainable_policy_parameters, gpu_peak_memory_mb (on CUDA only), processes and the config.
    Under `accelerate launch` every process runs this with the same arguments: each samples,
    scores and trains on its batch_size / N prompts of every step (batch_size and
    mini_batch_size must be multiples of N), reward normalisation, advantage whitening and the
    metrics are over the global batch, and the main process saves the policy.
    """
    if not prompts:
        raise ValueError("train_ppo needs at least one prompt")
    started = time.monotonic()
    accelerator = make_accelerator()
    n = accelerator.num_processes
    if config.batch_size % n or config.mini_batch_size % n:
        raise ValueError(f"batch_size and mini_batch_size must be multiples of the {n} processes")
    torch.manual_seed(config.seed)
    device = accelerator.device
    reset_peak_memory(device)
    tokenizer = load_tokenizer(policy_dir)
    models = _load_models(policy_dir, reward_dir, anchor_dir, config, reward_fn is None, device)
    for model in (models.critic.model, models.reward_model):  # both read the policy's token ids
        if model is not None and model.get_input_embeddings().num_embeddings < len(tokenizer):
            raise ValueError(f"{type(model).__name__} vocabulary is smaller than the policy's")
    optimizer = torch.optim.AdamW(
        [p for m in (models.policy, models.critic) for p in m.parameters() if p.requires_grad],
        lr=config.learning_rate,
    )
    models.policy_train, models.critic_train, optimizer = accelerator.prepare(
        models.policy, models.critic, optimizer
    )
    if n > 1:  # each process samples its own responses; one process keeps today's stream
        torch.manual_seed(config.seed + accelerator.process_index)
    generation_config = GenerationConfig(
        do_sample=True,
        temperature=config.temperature,
        top_k=0,  # sample from the full distribution: the logprobs assume it
        top_p=1.0,
        max_new_tokens=config.max_new_tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )

    # Cycle through the prompts in a seeded order, reshuffled on every pass: the same order in
    # every process, each taking its contiguous share of the step's batch.
    order_rng = torch.Generator().manual_seed(config.seed)
    order: list[int] = []
    history: list[dict[str, float]] = []
    moments, target_length = _RunningMoments(), 0.0
    loop_started = time.monotonic()
    for step in range(1, config.steps + 1):
        batch_prompts = []
        for _ in range(config.batch_size):
            if not order:
                order = torch.randperm(len(prompts), generator=order_rng).tolist()
            batch_prompts.append(prompts[order.pop()])
        with accelerator.split_between_processes(batch_prompts) as share:
            local_prompts = list(share)

        rollout = _rollout(models, tokenizer, local_prompts, generation_config, config, reward_fn)
        if not target_length:  # the first batch's mean length, over every process's rollouts
            target_length = accelerator.gather(rollout.mask.sum(1)).mean().item()
        scores = _shaped_scores(rollout, config, moments, target_length, accelerator)
        kl, advantages, returns = _advantages(rollout, scores, config, accelerator)
        losses = _update(models, optimizer, rollout, advantages, returns, config, accelerator)

        history.append(_step_metrics(accelerator, rollout, scores, kl, losses))
        if on_step is not None:
            on_step(step, config.steps, history[-1])

    loop_seconds = time.monotonic() - loop_started
    response_tokens = sum(round(m["mean_response_length"] * config.batch_size) for m in history)
    policy = models.policy
    trainable_parameters = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:  # a plain model: from_pretrained loads it
        save_model(merge_lora(policy), tokenizer, out_dir)
    accelerator.wait_for_everyone()  # the policy is on disk before any process returns
    final = history[-1] if history else {}
    return {
        "first_mean_reward": history[0]["mean_reward"] if history else math.nan,
        "last_mean_reward": final.get("mean_reward", math.nan),
        "final_kl": final.get("kl", math.nan),
        "final_anchor_kl": final.get("anchor_kl", math.nan),
        "steps": history,
        "seconds": time.monotonic() - started,
        "tokens_per_second": response_tokens / max(loop_seconds, 1e-9),
        "trainable_policy_parameters": trainable_parameters,
        "processes": n,
        **peak_memory_metrics(device),
        "config": asdict(config),
    }
