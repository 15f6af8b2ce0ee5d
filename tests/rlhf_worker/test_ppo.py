"""PPO: the loss formulas on hand-computed numbers, and real runs on a tiny Llama."""

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import GenerationConfig

from rlhf_worker.training.artifacts import load_causal_lm, load_tokenizer, save_model
from rlhf_worker.training.format import format_prompt
from rlhf_worker.training.ppo import (
    PPOConfig,
    _policy_logits,
    _RunningMoments,
    _shaped_scores,
    _with_lora,
    compute_gae,
    policy_loss,
    train_ppo,
    value_loss,
)
from tests.model_fixtures import corpus

PROMPTS = [
    "Name a color.",
    "Write a short poem about the sea.",
    "Give me one tip for sleeping well.",
    "What is the capital of France?",
]


def test_compute_gae_matches_hand_computation():
    # Row 0: two response tokens, then padding whose (absurd) reward and value must not leak.
    # Row 1: three response tokens.
    rewards = torch.tensor([[0.0, 1.0, 5.0], [0.1, -0.2, 1.0]])
    values = torch.tensor([[0.5, 0.2, 9.0], [0.3, 0.4, 0.5]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    advantages, returns = compute_gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # Row 0: t=1: δ = 1 + 0 - 0.2 = 0.8 (episode ends: next value 0); A = 0.8
    #        t=0: δ = 0 + 0.2 - 0.5 = -0.3;  A = -0.3 + 0.95 * 0.8 = 0.46
    # Row 1: t=2: δ = 1 - 0.5 = 0.5;         A = 0.5
    #        t=1: δ = -0.2 + 0.5 - 0.4 = -0.1; A = -0.1 + 0.95 * 0.5 = 0.375
    #        t=0: δ = 0.1 + 0.4 - 0.3 = 0.2;  A = 0.2 + 0.95 * 0.375 = 0.55625
    # Returns = A + V on response tokens, 0 on padding.
    torch.testing.assert_close(advantages, torch.tensor([[0.46, 0.8, 0.0], [0.55625, 0.375, 0.5]]))
    torch.testing.assert_close(returns, torch.tensor([[0.96, 1.0, 0.0], [0.85625, 0.775, 1.0]]))

    # Discounting: with zero values and lam = 1, A_t = gamma^(T-1-t) * final reward.
    advantages, returns = compute_gae(
        torch.tensor([[0.0, 0.0, 1.0]]), torch.zeros(1, 3), torch.ones(1, 3), gamma=0.5, lam=1.0
    )
    torch.testing.assert_close(advantages, torch.tensor([[0.25, 0.5, 1.0]]))
    torch.testing.assert_close(returns, advantages)


def test_policy_loss_and_clip_fraction_match_hand_computation():
    ratios = torch.tensor([[1.5, 0.5, 0.5, 1.1, 2.0]])
    advantages = torch.tensor([[1.0, 2.0, -1.0, 1.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    old_logprobs = torch.tensor([[-1.0, -2.0, -1.0, -0.5, -3.0]])
    logprobs = old_logprobs + ratios.log()
    loss, clip_fraction = policy_loss(logprobs, old_logprobs, advantages, mask, cliprange=0.2)
    # token 0: r=1.5, A=+1: max(-1.5, -1.2) = -1.2   clipped
    # token 1: r=0.5, A=+2: max(-1.0, -1.6) = -1.0   not clipped (the ratio fell, A > 0)
    # token 2: r=0.5, A=-1: max( 0.5,  0.8) =  0.8   clipped
    # token 3: r=1.1, A=+1: max(-1.1, -1.1) = -1.1   inside the range
    # token 4: padding
    torch.testing.assert_close(loss, torch.tensor((-1.2 - 1.0 + 0.8 - 1.1) / 4))
    torch.testing.assert_close(clip_fraction, torch.tensor(0.5))


def test_value_loss_matches_hand_computation():
    values = torch.tensor([[0.5, 0.9, 0.2, -9.0]])
    old_values = torch.tensor([[0.0, 1.0, 0.5, 9.0]])
    returns = torch.tensor([[1.0, 0.0, 0.5, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss = value_loss(values, old_values, returns, mask, cliprange_value=0.2)
    # t0: clip(0.5, -0.2, 0.2) = 0.2:  max((0.5-1)², (0.2-1)²) = 0.64
    # t1: clip(0.9,  0.8, 1.2) = 0.9:  max(0.81, 0.81)          = 0.81
    # t2: clip(0.2,  0.3, 0.7) = 0.3:  max((0.2-0.5)², (0.3-0.5)²) = 0.09
    torch.testing.assert_close(loss, torch.tensor(0.5 * (0.64 + 0.81 + 0.09) / 3))


def test_train_ppo_updates_and_saves_the_policy(tiny_model_dir, tmp_path):
    calls = []
    config = PPOConfig(steps=2, batch_size=4, mini_batch_size=2, ppo_epochs=2, max_new_tokens=8)
    out_dir = tmp_path / "ppo-policy"
    summary = train_ppo(
        tiny_model_dir,
        tiny_model_dir,  # reward model and critic: the same backbone with a new score head
        PROMPTS,
        out_dir,
        config,
        on_step=lambda step, total, metrics: calls.append((step, total, metrics)),
    )

    assert [(step, total) for step, total, _ in calls] == [(1, 2), (2, 2)]
    names = {
        "mean_reward",
        "kl",
        "entropy",
        "policy_loss",
        "value_loss",
        "clip_fraction",
        "mean_response_length",
        "no_eos_fraction",
    }
    for _, _, metrics in calls:
        assert names <= metrics.keys()
        assert all(type(v) is float and math.isfinite(v) for v in metrics.values()), metrics
        assert 1 <= metrics["mean_response_length"] <= config.max_new_tokens
    # The first rollout's policy is the reference: the same forward, so exactly zero KL.
    assert abs(calls[0][2]["kl"]) < 1e-5
    assert summary["steps"] == [metrics for _, _, metrics in calls]
    assert math.isfinite(summary["last_mean_reward"]) and math.isfinite(summary["final_kl"])

    trained = load_causal_lm(out_dir, device=torch.device("cpu"))
    original = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained.state_dict()[name], original.state_dict()[name])
    assert not any("score" in key for key in trained.state_dict())  # no value head saved


@pytest.fixture(scope="module")
def speaking_model_dir(tiny_model_dir, tiny_tokenizer, tmp_path_factory):
    """tiny_model_dir after a few seconds of next-token training on the shipped corpus.

    With random weights every token has probability ~1/1024, so a reward for one token would
    almost never be seen in a rollout; a little training gives the corpus's frequent tokens
    the few-percent probabilities they have in an SFT model.
    """
    torch.manual_seed(0)
    model = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    texts = corpus()
    for i in range(150):
        batch = [texts[(i * 16 + j) % len(texts)] for j in range(16)]
        enc = tiny_tokenizer(
            batch, return_tensors="pt", padding=True, truncation=True, max_length=64
        )
        loss = model(**enc, labels=enc.input_ids.masked_fill(enc.attention_mask == 0, -100)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_model(model, tiny_tokenizer, tmp_path_factory.mktemp("models") / "speaking")


def token_rate(model_dir, tokenizer, token_id: int, max_new_tokens: int) -> float:
    """Share of `token_id` among the tokens of 64 sampled responses (fixed seed)."""
    torch.manual_seed(1234)
    model = load_causal_lm(model_dir, device=torch.device("cpu")).eval()
    prompts = [format_prompt(tokenizer, p) for p in corpus()[0::2][:32]] * 2
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    generation = GenerationConfig(
        do_sample=True,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.inference_mode():
        responses = model.generate(**enc, generation_config=generation)[:, enc.input_ids.shape[1] :]
    real = responses != tokenizer.pad_token_id
    return ((responses == token_id) & real).sum().item() / real.sum().item()


def test_ppo_raises_the_frequency_of_a_rewarded_token(speaking_model_dir, tiny_tokenizer, tmp_path):
    (token_id,) = tiny_tokenizer(" the", add_special_tokens=False).input_ids

    def reward_fn(prompts: list[str], completions: list[str]) -> list[float]:
        # One point per occurrence of the token in the (re-tokenized) response.
        ids = tiny_tokenizer(completions, add_special_tokens=False).input_ids
        return [float(seq.count(token_id)) for seq in ids]

    config = PPOConfig(
        steps=12,
        batch_size=16,
        mini_batch_size=8,
        ppo_epochs=4,
        learning_rate=1e-3,
        max_new_tokens=10,
        seed=0,
    )
    out_dir = tmp_path / "ppo-the"
    summary = train_ppo(
        speaking_model_dir,
        speaking_model_dir,
        corpus()[0::2][:32],
        out_dir,
        config,
        reward_fn=reward_fn,
    )

    before = token_rate(speaking_model_dir, tiny_tokenizer, token_id, config.max_new_tokens)
    after = token_rate(out_dir, tiny_tokenizer, token_id, config.max_new_tokens)
    assert after > max(3 * before, before + 0.05), (before, after)
    assert summary["last_mean_reward"] > summary["first_mean_reward"]


@pytest.mark.parametrize("lora", [False, True])
def test_policy_logits_of_the_response_equal_those_of_a_full_forward(tiny_model_dir, lora):
    model = load_causal_lm(tiny_model_dir)
    if lora:
        model = _with_lora(model, PPOConfig(lora_r=4))
    torch.manual_seed(0)
    input_ids = torch.randint(5, model.config.vocab_size, (3, 11))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, :4] = 0  # left padding, as generate leaves it
    prompt_len, temperature = 6, 0.7

    got = _policy_logits(model, input_ids, attention_mask, prompt_len, temperature)

    full = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=(attention_mask.cumsum(1) - 1).clamp(min=0),
        use_cache=False,
    ).logits
    want = full[:, prompt_len - 1 : -1].float() / (temperature + 1e-7)
    assert got.shape == (3, 11 - prompt_len, model.config.vocab_size)
    torch.testing.assert_close(got, want)


def test_running_moments_equal_the_statistics_of_everything_seen():
    torch.manual_seed(0)
    batches = [torch.randn(8) * 3 + 1, torch.randn(5) - 2, torch.randn(16) * 0.5]
    moments = _RunningMoments()
    for batch in batches:
        moments.update(batch)
    everything = torch.cat(batches)
    assert math.isclose(moments.mean, everything.mean().item(), rel_tol=1e-5)
    assert math.isclose(moments.std, everything.std().item(), rel_tol=1e-5)


def test_shaped_scores_normalise_then_penalise_missing_eos_and_length():
    mask = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]])
    rollout = SimpleNamespace(
        scores=torch.tensor([1.0, 3.0, 5.0, 7.0]),
        has_eos=torch.tensor([True, False, True, True]),
        mask=mask,
    )
    config = PPOConfig(missing_eos_penalty=1.0, length_penalty=0.5)
    got = _shaped_scores(rollout, config, _RunningMoments(), target_length=2.0)
    std = torch.tensor([1.0, 3.0, 5.0, 7.0]).std()
    want = (torch.tensor([1.0, 3.0, 5.0, 7.0]) - 4.0) / std
    want -= torch.tensor([0.0, 1.0, 0.0, 0.0])  # row 1 never ended
    want -= 0.5 * torch.tensor([0.0, math.log(2), math.log(2), 0.0])  # twice the target length
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_the_anchor_adds_its_own_kl_when_it_is_another_policy(tiny_model_dir, tmp_path):
    anchor = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    with torch.no_grad():
        for param in anchor.parameters():
            param.add_(0.05 * torch.randn_like(param))
    anchor_dir = save_model(anchor, load_tokenizer(tiny_model_dir), tmp_path / "anchor")
    config = PPOConfig(steps=1, batch_size=4, mini_batch_size=4, ppo_epochs=1, max_new_tokens=6)
    same = train_ppo(tiny_model_dir, tiny_model_dir, PROMPTS, tmp_path / "a", config)
    other = train_ppo(
        tiny_model_dir, tiny_model_dir, PROMPTS, tmp_path / "b", config, anchor_dir=anchor_dir
    )
    # Without an anchor of its own, the anchor is the reference: the two KLs are one.
    assert same["steps"][0]["anchor_kl"] == same["steps"][0]["kl"] == 0.0
    assert other["steps"][0]["kl"] == 0.0  # the first rollout's policy is the reference
    assert other["steps"][0]["anchor_kl"] != 0.0
