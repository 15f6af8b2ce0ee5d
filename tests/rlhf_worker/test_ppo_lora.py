"""PPO's memory switches on a tiny Llama: LoRA with the reference as adapters-off, and activation
checkpointing."""

import math

import torch
import transformers
from transformers import AutoModelForCausalLM

from rlhf_worker.training import ppo
from rlhf_worker.training.artifacts import load_causal_lm
from rlhf_worker.training.generate import SamplingConfig, generate_completions
from rlhf_worker.training.ppo import PPOConfig, train_ppo

PROMPTS = [
    "Name a color.",
    "Write a short poem about the sea.",
    "Give me one tip for sleeping well.",
    "What is the capital of France?",
]
SMALL = {"steps": 2, "batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 2, "max_new_tokens": 8}


def test_lora_ppo_holds_one_policy_copy_and_saves_a_merged_plain_model(
    tiny_model_dir, tmp_path, monkeypatch
):
    loaded = []

    def counting_load(*args, **kwargs):
        loaded.append(args[0])
        return load_causal_lm(*args, **kwargs)

    monkeypatch.setattr(ppo, "load_causal_lm", counting_load)
    out_dir = tmp_path / "lora-policy"
    summary = train_ppo(
        tiny_model_dir,
        tiny_model_dir,
        PROMPTS,
        out_dir,
        PPOConfig(**SMALL, lora_r=4, learning_rate=1e-2),
    )

    assert len(loaded) == 1  # the policy; the reference is the same weights, adapters off
    for metrics in summary["steps"]:
        assert all(math.isfinite(v) for v in metrics.values()), metrics
    # LoRA's B starts at zero, so the first rollout's policy is exactly the reference.
    assert summary["steps"][0]["kl"] == 0.0
    original = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    total = sum(p.numel() for p in original.parameters())
    assert 0 < summary["trainable_policy_parameters"] < total / 4
    assert summary["tokens_per_second"] > 0

    # Plain from_pretrained, no peft: the adapters are merged into the weights.
    trained = AutoModelForCausalLM.from_pretrained(out_dir, use_safetensors=True)
    assert trained.state_dict().keys() == original.state_dict().keys()
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained.state_dict()[name], original.state_dict()[name])
    answers = generate_completions(out_dir, PROMPTS, SamplingConfig(k=1, max_new_tokens=4))
    assert all(a[0]["completion_tokens"] >= 1 for a in answers)


def test_activation_checkpointing_recomputes_layers_without_changing_the_run(
    tiny_model_dir, tmp_path, monkeypatch
):
    plain = train_ppo(tiny_model_dir, tiny_model_dir, PROMPTS, tmp_path / "a", PPOConfig(**SMALL))

    calls = []
    checkpoint = transformers.modeling_utils.checkpoint

    def counting_checkpoint(*args, **kwargs):
        calls.append(torch.is_grad_enabled())
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", counting_checkpoint)
    checkpointed = train_ppo(
        tiny_model_dir,
        tiny_model_dir,
        PROMPTS,
        tmp_path / "b",
        PPOConfig(**SMALL, gradient_checkpointing=True),
    )

    # 2 steps x 2 epochs x 2 minibatches x (policy + critic) x 2 layers, in the updates only:
    # rollouts (generation with the KV cache, scoring) are never checkpointed.
    assert calls == [True] * (2 * 2 * 2 * 2 * 2)
    for a, b in zip(plain["steps"], checkpointed["steps"], strict=True):
        assert a == b
