"""The bootstrapped base model: real data in, a loadable cached model directory out."""

import json
import math
from pathlib import Path

import torch

from rlhf_worker.training.artifacts import BUILD_METRICS_FILE, load_causal_lm, load_tokenizer
from rlhf_worker.training.bootstrap import (
    BootstrapConfig,
    TinyModelConfig,
    bootstrap_base_model,
    load_bootstrap_corpus,
)
from rlhf_worker.training.format import format_prompt
from rlhf_worker.training.sft import SFTConfig
from rlhf_worker.training.tokenizer import TokenizerConfig

DATA = Path(__file__).resolve().parents[2] / "labelapp" / "data"

TINY = BootstrapConfig(
    tokenizer=TokenizerConfig(vocab_size=512),
    model=TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
    pretrain_steps=4,
    pretrain_batch_size=4,
    seq_len=32,
    pretrain_warmup_steps=1,
    sft=SFTConfig(epochs=1, batch_size=8),
)


def test_load_bootstrap_corpus():
    corpus, demonstrations = load_bootstrap_corpus(DATA)
    assert len(demonstrations) == 175
    assert all(p and a for p, a in demonstrations)
    # 252 instructions with up to 8 answers and a reference, 1303 dialogues with two endings.
    assert 252 * 2 + 1303 * 3 <= len(corpus) <= 252 * 10 + 1303 * 3
    assert all(t == t.strip() and t for t in corpus)
    assert any(t.startswith("Human:") for t in corpus)  # the HH-RLHF dialogues


def test_bootstrap_writes_a_loadable_model_and_caches_it(tmp_path):
    corpus, demonstrations = load_bootstrap_corpus(DATA)
    out = tmp_path / "base"
    metrics = bootstrap_base_model(corpus[:300], demonstrations[:16], out, TINY, progress=True)

    for loss in ("loss_first", "loss_last"):
        assert math.isfinite(metrics["pretrain"][loss])
        assert math.isfinite(metrics["sft"][loss])
    assert metrics["pretrain"]["steps"] == 4
    assert metrics["sft"]["steps"] == 2
    assert json.loads((out / BUILD_METRICS_FILE).read_text()) == metrics

    tok = load_tokenizer(out)
    model = load_causal_lm(out, device=torch.device("cpu"))
    assert len(tok) == metrics["vocab_size"] <= 512
    assert model.config.hidden_size == 32
    assert model.config.eos_token_id == tok.eos_token_id != tok.pad_token_id
    enc = tok(format_prompt(tok, demonstrations[0][0]), return_tensors="pt")
    out_ids = model.generate(
        **enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id
    )
    assert out_ids.shape[1] > enc["input_ids"].shape[1]

    # Cached: no training at all (an empty corpus could not be trained on) and no rewrite.
    weights = out / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert bootstrap_base_model([], [], out, TINY, progress=False) == metrics
    assert weights.stat().st_mtime_ns == mtime
    assert not [p for p in tmp_path.iterdir() if p.name != "base"]  # no temporary leftovers
