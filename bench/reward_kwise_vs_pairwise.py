"""K-wise reward model training (ours) vs TRL's RewardTrainer on the same rankings as pairs.

Same model, data, epochs and optimizer settings; the K-wise loop forwards each completion of a
ranking once (K sequences for C(K,2) pairs), RewardTrainer forwards both sides of every pair
(2·C(K,2) sequences). Prints wall time of each, the ratio, and held-out pairwise accuracy of both,
measured by the same function on the same held-out rankings.

    .venv/bin/python bench/reward_kwise_vs_pairwise.py [--model DIR] [--epochs 1] [--chars 300]
        [--seeds 1] [--rankings N] [--top-layers N] [--threads 2]

On the real model (SmolLM2, 135M) a CPU run takes a subset of the training rankings
(--rankings) and trains the last --top-layers layers, the same layers on both sides; every
held-out ranking is scored either way.

Data: the 252 shipped self-instruct instructions, four real model answers each (cut to --chars
characters so no pair exceeds max_length: RewardTrainer drops longer rows instead of truncating),
ranked by a hidden preference (shorter is better, the length bias of HH-RLHF).
"""

import argparse
import json
import platform
import random
import tempfile
import time
from itertools import combinations
from pathlib import Path
from statistics import mean, stdev

import torch
import transformers
import trl
from datasets import Dataset

from rlhf_worker.training.artifacts import load_reward_model, load_tokenizer, save_model
from rlhf_worker.training.bootstrap import TinyModelConfig, build_tiny_model
from rlhf_worker.training.finetune import train_top_layers
from rlhf_worker.training.format import encode_exchange, format_prompt
from rlhf_worker.training.reward import (
    RankedExample,
    RewardConfig,
    evaluate_reward_model,
    is_held_out,
    train_reward_model,
)
from rlhf_worker.training.tokenizer import TokenizerConfig, train_tokenizer

DATA = (
    Path(__file__).resolve().parents[1] / "labelapp" / "data" / "self_instruct_user_oriented.jsonl"
)


def rankings(chars: int, seed: int = 0) -> list[RankedExample]:
    rng = random.Random(seed)
    out = []
    for line in DATA.open():
        row = json.loads(line)
        answers = sorted({t.strip()[:chars] for t in row["completions"].values() if t.strip()})
        if len(answers) >= 4:
            four = rng.sample(answers, 4)
            out.append(RankedExample(row["prompt"][:chars], sorted(four, key=len)))  # shorter wins
    return out


def tiny_model(directory: Path, texts: list[str], seed: int) -> Path:
    tokenizer = train_tokenizer(texts, TokenizerConfig(vocab_size=4096))
    return save_model(build_tiny_model(tokenizer, TinyModelConfig(seed=seed)), tokenizer, directory)


def train_trl(model_dir: Path, train, config: RewardConfig, out: Path) -> float:
    tokenizer = load_tokenizer(model_dir)
    pairs = [
        {"prompt": format_prompt(tokenizer, r.prompt), "chosen": better, "rejected": worse}
        for r in train
        for better, worse in combinations(r.completions, 2)
    ]
    args = trl.RewardConfig(
        output_dir=str(out),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size * 6,  # the same pairs per step as ours
        learning_rate=config.learning_rate,
        max_length=config.max_length,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        bf16=False,
        activation_checkpointing=False,
        use_cpu=True,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_steps=1000,
    )
    started = time.monotonic()  # like ours: loading, tokenizing, training, saving
    model = train_top_layers(
        load_reward_model(model_dir, device=torch.device("cpu")), config.top_layers
    )
    trainer = trl.RewardTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer
    )
    assert len(trainer.train_dataset) == len(pairs), "RewardTrainer dropped rows (max_length)"
    trainer.train()
    save_model(trainer.model, tokenizer, out / "model")
    return time.monotonic() - started


def one_seed(args: argparse.Namespace, seed: int, tmp: Path) -> dict:
    """Both trainers on one seed's data, model initialisation and shuffling."""
    data = rankings(args.chars, seed)
    config = RewardConfig(
        epochs=args.epochs,
        batch_size=8,
        learning_rate=args.learning_rate,
        max_length=512,
        top_layers=args.top_layers,
        seed=seed,
    )
    model_dir = (
        Path(args.model)
        if args.model
        else tiny_model(
            tmp / "base", [r.prompt for r in data] + [a for r in data for a in r.completions], seed
        )
    )
    tokenizer = load_tokenizer(model_dir)

    def tokens(prompt: str, answer: str) -> int:
        return len(encode_exchange(tokenizer, prompt, answer, 10_000)[0])

    # RewardTrainer drops a pair longer than max_length (ours would cut its prompt): both sides
    # train on the rankings that fit whole (with room for the EOS TRL appends).
    data = [r for r in data if max(tokens(r.prompt, a) for a in r.completions) < config.max_length]
    held_out = [r for r in data if is_held_out(r.prompt, config.eval_fraction)]
    train = [r for r in data if not is_held_out(r.prompt, config.eval_fraction)][: args.rankings]
    lengths = [tokens(r.prompt, a) for r in train for a in r.completions]

    started = time.monotonic()
    ours = train_reward_model(model_dir, train + held_out, tmp / "kwise", config)
    ours_seconds = time.monotonic() - started
    trl_seconds = train_trl(model_dir, train, config, tmp / "trl")
    trl_eval = evaluate_reward_model(
        load_reward_model(tmp / "trl" / "model", device=torch.device("cpu")),
        load_tokenizer(tmp / "trl" / "model"),
        held_out,
        config,
    )
    return {
        "train": len(train),
        "held_out": len(held_out),
        "tokens": sum(lengths) / len(lengths),
        "ours": (ours_seconds, ours["eval_accuracy"]),
        "trl": (trl_seconds, trl_eval["eval_accuracy"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="A model dir (default: a random tiny model built here).")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--chars", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1, help="Repeat with seeds 0..N-1.")
    parser.add_argument("--rankings", type=int, help="Train on the first N rankings only.")
    parser.add_argument("--top-layers", type=int, default=0, help="Train the last N layers.")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, {args.threads} threads; torch "
        f"{torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}"
    )
    results = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            r = one_seed(args, seed, Path(tmp))
        results.append(r)
        print(
            f"seed {seed}: rankings {r['train']} train ({r['train'] * 6} pairs), "
            f"{r['held_out']} held out; {r['tokens']:.0f} tokens per sequence; "
            f"epochs {args.epochs}; top layers {args.top_layers or 'all'}; "
            f"lr {args.learning_rate:g}"
        )
        for name, key in (("K-wise (ours)", "ours"), ("TRL RewardTrainer", "trl")):
            seconds, accuracy = r[key]
            print(f"  {name:20s} {seconds:7.1f} s   held-out pairwise accuracy {accuracy:.3f}")
        print(f"  speed-up: {r['trl'][0] / r['ours'][0]:.2f}x")
    if args.seeds > 1:
        diffs = [r["ours"][1] - r["trl"][1] for r in results]
        speedups = [r["trl"][0] / r["ours"][0] for r in results]
        print(
            f"over {args.seeds} seeds: accuracy ours {mean(r['ours'][1] for r in results):.3f}, "
            f"TRL {mean(r['trl'][1] for r in results):.3f}; difference (ours - TRL) "
            f"{mean(diffs):+.3f} +- {stdev(diffs):.3f} (std); speed-up "
            f"{mean(speedups):.2f}x (min {min(speedups):.2f}x, max {max(speedups):.2f}x)"
        )


if __name__ == "__main__":
    main()
