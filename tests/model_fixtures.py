"""A tiny tokenizer and model, built once per test session (random weights, no pretraining).

Imported by the conftest of each test folder that trains or serves a model."""

import json
from pathlib import Path

import pytest
import torch

from rlhf_worker.training.artifacts import save_model
from rlhf_worker.training.bootstrap import TinyModelConfig, build_tiny_model
from rlhf_worker.training.tokenizer import TokenizerConfig, train_tokenizer

DATA = Path(__file__).resolve().parents[1] / "labelapp" / "data"

torch.set_num_threads(2)


def corpus(limit: int = 400) -> list[str]:
    """Real text the project ships: seed instructions and their human answers."""
    texts = []
    with (DATA / "self_instruct_seed_tasks.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            texts += [row["prompt"], row["demonstration"]]
    return texts[:limit]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_tokenizer(corpus(), TokenizerConfig(vocab_size=1024))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A 2-layer Llama-style causal LM saved like a hub model."""
    model = build_tiny_model(
        tiny_tokenizer, TinyModelConfig(hidden_size=64, num_layers=2, intermediate_size=128)
    )
    return save_model(model, tiny_tokenizer, tmp_path_factory.mktemp("models") / "tiny-policy")
