"""Build the tiny local base model: tokenizer, config, pretraining pass, SFT on demonstrations.

No hub is reachable where this runs; the result is saved with save_pretrained and loaded with
from_pretrained exactly like a hub model, so production can point BASE_MODEL at a real one.
"""

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from rlhf_worker.training.artifacts import build_base_model_once, pick_device
from rlhf_worker.training.sft import SFTConfig, lr_factor, train_sft
from rlhf_worker.training.tokenizer import TokenizerConfig, train_tokenizer


@dataclass
class TinyModelConfig:
    hidden_size: int = field(default=128, metadata={"help": "Width of the residual stream."})
    num_layers: int = field(default=4, metadata={"help": "Transformer blocks."})
    num_heads: int = field(
        default=4, metadata={"help": "Attention heads (head dim = width/heads)."}
    )
    intermediate_size: int = field(default=384, metadata={"help": "MLP width."})
    max_position_embeddings: int = field(default=512, metadata={"help": "Longest sequence."})
    seed: int = field(default=0, metadata={"help": "Seed of the random initialisation."})


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase, config: TinyModelConfig
) -> LlamaForCausalLM:
    """A freshly initialised Llama-style causal LM sized for a CPU, matching `tokenizer`."""
    torch.manual_seed(config.seed)
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(llama)


@dataclass
class BootstrapConfig:
    tokenizer: TokenizerConfig = field(
        default_factory=TokenizerConfig, metadata={"help": "BPE tokenizer trained on the corpus."}
    )
    model: TinyModelConfig = field(
        default_factory=TinyModelConfig, metadata={"help": "Shape of the tiny Llama."}
    )
    pretrain_steps: int = field(default=700, metadata={"help": "Causal-LM steps on the corpus."})
    pretrain_batch_size: int = field(default=16, metadata={"help": "Chunks per pretraining step."})
    seq_len: int = field(default=128, metadata={"help": "Tokens per pretraining chunk."})
    pretrain_lr: float = field(default=3e-3, metadata={"help": "Peak pretraining learning rate."})
    pretrain_warmup_steps: int = field(
        default=30, metadata={"help": "Linear warm-up steps before the cosine decay."}
    )
    sft: SFTConfig = field(
        default_factory=lambda: SFTConfig(
            epochs=4, batch_size=8, learning_rate=1e-3, warmup_steps=5, min_lr_ratio=0.1
        ),
        metadata={"help": "SFT on the demonstrations after pretraining."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of chunk sampling (init: model.seed)."})


def load_bootstrap_corpus(data_dir: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(corpus texts, demonstrations) from the three JSONL files shipped in `data_dir`.

    The corpus is the user-oriented instructions with all their model answers and references
    and the HH-RLHF dialogues with both endings; the demonstrations are the seed tasks'
    (prompt, human answer) pairs.
    """

    def rows(name: str) -> list[dict]:
        with (Path(data_dir) / name).open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    corpus: list[str] = []
    for row in rows("self_instruct_user_oriented.jsonl"):
        corpus += [row["prompt"], *row["completions"].values(), row["reference"]]
    for row in rows("hh_rlhf_harmless_sample.jsonl"):
        corpus += [row["prompt"], row["chosen"], row["rejected"]]
    corpus = [t.strip() for t in corpus if t and t.strip()]
    demonstrations = [
        (row["prompt"], row["demonstration"]) for row in rows("self_instruct_seed_tasks.jsonl")
    ]
    return corpus, demonstrations


def pack_corpus(tokenizer: PreTrainedTokenizerBase, texts: list[str], seq_len: int) -> torch.Tensor:
    """[N, seq_len] chunks of the token stream text₀ EOS text₁ EOS …; the tail is dropped."""
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream += [*ids, tokenizer.eos_token_id]
    n = len(stream) // seq_len
    if n == 0:
        raise ValueError(f"corpus has {len(stream)} tokens, fewer than seq_len={seq_len}")
    return torch.tensor(stream[: n * seq_len]).view(n, seq_len)


def pretrain(
    model: LlamaForCausalLM, chunks: torch.Tensor, config: BootstrapConfig, progress: bool
) -> dict:
    """Causal-LM pretraining on random batches of `chunks`; returns its loss curve."""
    started = time.monotonic()
    rng = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.pretrain_lr, weight_decay=0.1)
    model.train()
    losses: list[float] = []
    bar = tqdm(range(config.pretrain_steps), desc="pretrain", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = config.pretrain_lr * lr_factor(
                step, config.pretrain_steps, config.pretrain_warmup_steps, 0.1
            )
        idx = torch.randint(len(chunks), (config.pretrain_batch_size,), generator=rng)
        batch = chunks[idx].to(model.device)
        # Every chunk is full: no padding, so labels are the inputs (the model shifts them).
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return {
        "loss_first": losses[0] if losses else math.nan,
        "loss_last": losses[-1] if losses else math.nan,
        "steps": len(losses),
        "losses": losses,
        "chunks": len(chunks),
        "seconds": time.monotonic() - started,
    }


def bootstrap_base_model(
    corpus: list[str],
    demonstrations: list[tuple[str, str]],
    out_dir: str | Path,
    config: BootstrapConfig,
    progress: bool = True,
) -> dict:
    """Tokenizer, tiny model, pretraining on `corpus`, SFT on `demonstrations`, saved to out_dir.

    Cached (artifacts.build_base_model_once): when `out_dir` holds a finished bootstrap, its
    saved metrics are returned and nothing is trained.
    """
    return build_base_model_once(
        out_dir, lambda: _build_tiny(corpus, demonstrations, config, progress)
    )


def _build_tiny(
    corpus: list[str],
    demonstrations: list[tuple[str, str]],
    config: BootstrapConfig,
    progress: bool,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase, dict]:
    started = time.monotonic()
    tokenizer = train_tokenizer(
        [*corpus, *(p + "\n" + a for p, a in demonstrations)], config.tokenizer
    )
    model = build_tiny_model(tokenizer, config.model).to(pick_device())
    chunks = pack_corpus(tokenizer, corpus, config.seq_len)
    pretrain_metrics = pretrain(model, chunks, config, progress)

    bar = tqdm(desc="sft", disable=not progress)

    def on_step(step: int, total: int, metrics: dict[str, float]) -> None:
        bar.total = total
        bar.update()
        bar.set_postfix(loss=f"{metrics['loss']:.3f}")

    sft_metrics = train_sft(model, tokenizer, demonstrations, config.sft, on_step=on_step)
    bar.close()
    metrics = {
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "corpus_texts": len(corpus),
        "corpus_tokens": chunks.numel(),
        "pretrain": pretrain_metrics,
        "sft": sft_metrics,
        "seconds": time.monotonic() - started,
        "config": asdict(config),
    }
    return model, tokenizer, metrics
