"""Batched sampling of K completions per prompt, on real tiny models."""

import random

import pytest
import torch

from rlhf_worker.training.artifacts import load_tokenizer
from rlhf_worker.training.format import format_prompt
from rlhf_worker.training.generate import SamplingConfig, generate_completions
from rlhf_worker.training.sft import SFTConfig, sft_model_dir

# Prompts of very different lengths, so batches need real padding.
PAIRS = [
    ("Say hi.", "Hello there, friend!"),
    ("Name a fruit that is yellow and curved.", "A banana is yellow and curved."),
    (
        "Write one sentence about the sea, the wind and the long grey clouds over the harbour "
        "at the end of a cold winter day.",
        "The wind pushed grey clouds over the cold sea.",
    ),
    ("What is two plus two?", "Two plus two is four."),
]
GREEDY = SamplingConfig(k=2, temperature=0.0, max_new_tokens=24, batch_size=2)


@pytest.fixture(scope="module")
def trained_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model taught to answer PAIRS (and stop): greedy output is then predictable."""
    out = tmp_path_factory.mktemp("models") / "answers"
    config = SFTConfig(epochs=60, batch_size=4, learning_rate=1e-2)
    metrics = sft_model_dir(tiny_model_dir, PAIRS, out, config)
    assert metrics["loss_last"] < 0.1
    return out


def test_k_completions_in_input_order_stopping_at_eos(trained_dir):
    tok = load_tokenizer(trained_dir)
    pairs = PAIRS[:]
    random.Random(1).shuffle(pairs)  # not sorted by length: the batching sorts internally
    results = generate_completions(trained_dir, [p for p, _ in pairs], GREEDY)
    assert len(results) == len(pairs)
    for (prompt, answer), completions in zip(pairs, results, strict=True):
        assert len(completions) == GREEDY.k
        for c in completions:
            assert c["text"] == answer  # its own answer: the order survived sorting
            assert c["finished"]
            assert c["prompt_tokens"] == len(tok(format_prompt(tok, prompt))["input_ids"])
            answer_tokens = len(tok(answer, add_special_tokens=False)["input_ids"])
            assert c["completion_tokens"] == answer_tokens + 1  # + EOS, nothing after it
            assert c["sampling"] == {
                "temperature": 0.0,
                "top_p": 0.95,
                "max_new_tokens": 24,
                "seed": 0,
            }


def test_max_new_tokens_cuts_unfinished_completions(trained_dir):
    tok = load_tokenizer(trained_dir)
    config = SamplingConfig(k=1, temperature=0.0, max_new_tokens=3)
    results = generate_completions(trained_dir, [p for p, _ in PAIRS], config)
    for (_, answer), [c] in zip(PAIRS, results, strict=True):
        assert not c["finished"]
        assert c["completion_tokens"] == 3
        assert c["text"] == tok.decode(tok(answer, add_special_tokens=False)["input_ids"][:3])


def test_left_padding_does_not_change_completions(trained_dir):
    # Unseen prompts: their greedy text mixes the taught answers with small logit margins, so
    # it changes if padding leaks into attention (checked: an all-ones attention mask or right
    # padding makes this test fail).
    prompts = [
        "Tell me about the yellow sea and the wind.",
        "Hi.",
        "Write a long, long story about a banana who wanted to become a cloud over the harbour.",
    ]
    config = SamplingConfig(k=1, temperature=0.0, max_new_tokens=16)
    batched = generate_completions(trained_dir, prompts, config)
    alone = [generate_completions(trained_dir, [p], config)[0] for p in prompts]
    assert batched == alone
    assert len({c[0]["text"] for c in alone}) == len(prompts)  # not one degenerate output


def test_sampling_is_deterministic_per_seed(tiny_model_dir):
    prompts = ["Say hi.", "What is two plus two?", "Name a fruit."]
    config = SamplingConfig(k=4, max_new_tokens=8, batch_size=2, seed=3)
    first = generate_completions(tiny_model_dir, prompts, config)
    again = generate_completions(tiny_model_dir, prompts, config)
    other = generate_completions(
        tiny_model_dir, prompts, SamplingConfig(**{**vars(config), "seed": 4})
    )
    assert first == again
    texts = [[c["text"] for c in cs] for cs in first]
    assert texts != [[c["text"] for c in cs] for cs in other]
    assert all(len(set(t)) > 1 for t in texts)  # the k samples of a prompt really differ
    assert all(c["sampling"]["seed"] == 3 for cs in first for c in cs)


def test_no_prompts():
    assert generate_completions("/nonexistent", [], SamplingConfig()) == []


@pytest.mark.parametrize("top_p", [0.5, 0.95, 1.0])
def test_nucleus_sampling_keeps_the_tokens_transformers_keeps(top_p):
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    from rlhf_worker.training.generate import NucleusSampling

    torch.manual_seed(0)
    peaked = torch.randn(6, 5000) * 8  # nucleus within the top 256
    flat = torch.randn(2, 5000) * 0.01  # nucleus wider than 256: the full-sort fallback
    scores = torch.cat([peaked, flat])
    ids = torch.zeros(8, 1, dtype=torch.long)
    want = TopPLogitsWarper(top_p)(ids, TemperatureLogitsWarper(0.7)(ids, scores))
    got = NucleusSampling(0.7, top_p, candidates=256)(ids, scores)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    assert torch.allclose(got[~torch.isinf(got)], want[~torch.isinf(want)])
    if top_p < 1:
        kept = (~torch.isinf(got)).sum(-1)
        assert kept[:6].max() < 256 < kept[6:].min()  # both paths were taken
