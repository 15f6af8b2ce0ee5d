"""The fast generation path: length-sorted batches, its speed metrics, and the engine fallback."""

import logging
import math
import random

import pytest
import torch

from rlhf_worker.training.artifacts import load_causal_lm, load_tokenizer, save_model
from rlhf_worker.training.generate import (
    SamplingConfig,
    generate_completions,
    length_sorted_batches,
    sample_completions,
)

# Very different lengths, so a batch of two needs real padding whatever the order.
PROMPTS = [
    "Hi.",
    "Name a fruit that is yellow and curved.",
    "Write one sentence about the sea, the wind and the long grey clouds over the harbour.",
    "What is two plus two?",
    "Say something kind to a friend who has had a long and difficult week at work.",
]
GREEDY = SamplingConfig(k=2, temperature=0.0, max_new_tokens=12, batch_size=2)


@pytest.fixture(scope="module")
def peaked_model_dir(tiny_model_dir, tmp_path_factory):
    """tiny_model_dir with larger random weights: its greedy answers differ from prompt to prompt
    (the fixture's near-uniform logits make every greedy answer a run of newlines)."""
    torch.manual_seed(0)
    model = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.normal_(0, 0.1)
    out = tmp_path_factory.mktemp("models") / "peaked"
    return save_model(model, load_tokenizer(tiny_model_dir), out)


def test_batches_hold_prompts_of_similar_length_shortest_first():
    assert length_sorted_batches([5, 1, 9, 3, 7], batch_size=2) == [[1, 3], [0, 4], [2]]
    assert length_sorted_batches([], batch_size=4) == []


def test_sorted_batches_give_each_prompt_the_answer_it_gets_alone(peaked_model_dir):
    shuffled = PROMPTS[:]
    random.Random(0).shuffle(shuffled)
    batched = generate_completions(peaked_model_dir, shuffled, GREEDY)
    # batch_size=1: no sorting, no padding; each prompt's greedy answer on its own.
    alone = generate_completions(
        peaked_model_dir, shuffled, SamplingConfig(**{**vars(GREEDY), "batch_size": 1})
    )
    reversed_batched = generate_completions(peaked_model_dir, shuffled[::-1], GREEDY)
    assert batched == alone
    assert reversed_batched == alone[::-1]  # outputs follow the input order, whatever it is
    assert len({c[0]["text"] for c in alone}) == len(PROMPTS)  # not one degenerate answer


def test_metrics_report_sampled_tokens_and_tokens_per_second(tiny_model_dir):
    config = SamplingConfig(k=3, max_new_tokens=6, batch_size=2)
    generation = sample_completions(tiny_model_dir, PROMPTS, config)
    tokens = sum(c["completion_tokens"] for cs in generation.completions for c in cs)
    metrics = generation.metrics
    assert metrics["engine"] == "transformers"
    assert metrics["sampled_tokens"] == tokens
    assert metrics["seconds"] > 0
    assert math.isfinite(metrics["tokens_per_second"]) and metrics["tokens_per_second"] > 0
    assert "gpu_peak_memory_mb" not in metrics  # CUDA only

    # Greedy decoding samples one sequence per prompt and copies it k times.
    greedy = sample_completions(tiny_model_dir, PROMPTS, GREEDY)
    copies = sum(c["completion_tokens"] for cs in greedy.completions for c in cs)
    assert greedy.metrics["sampled_tokens"] * GREEDY.k == copies


def test_vllm_engine_falls_back_to_transformers_with_a_warning(tiny_model_dir, caplog):
    # No vLLM and no GPU here: the same completions as the transformers engine.
    config = SamplingConfig(k=2, max_new_tokens=6, seed=1)
    with caplog.at_level(logging.WARNING, logger="rlhf_worker.training.generate"):
        generation = sample_completions(
            tiny_model_dir, PROMPTS, SamplingConfig(**{**vars(config), "engine": "vllm"})
        )
    assert "generating with transformers" in caplog.text
    assert generation.metrics["engine"] == "transformers"
    assert generation.completions == generate_completions(tiny_model_dir, PROMPTS, config)


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine must be one of transformers, vllm"):
        SamplingConfig(engine="tgi")
