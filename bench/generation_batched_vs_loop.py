"""Batched generation (the worker's generate.py) vs a per-prompt loop: same prompts, same model.

(a) batched: sample_completions, as the generate step calls it: prompts sorted by length, batches
    of --batch-size prompts, K samples per prompt from one generate call, KV cache, inference mode.
(b) loop: one model.generate per prompt per sample (batch of one, no padding), with the same
    sampling settings, the KV cache and inference mode too, so only the batching differs.
Tokens are completion tokens up to and including EOS (what the labelers get); what a batch
generates after a row's EOS is waste and is not counted. Both timings cover loading the model,
tokenizing, sampling and decoding. Prints tokens/s of each and the ratio.

    .venv/bin/python bench/generation_batched_vs_loop.py [--model DIR] [--prompts 64] [--k 4]

The model is --model (e.g. artifacts/smollm2-135m-instruct), else the tiny
artifacts/tiny-base-model (`bootstrap_model --tiny`) when it is there, else a
randomly initialised model of the same shape (4 layers, 128 wide) with a tokenizer trained here.
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import GenerationConfig as HFGenerationConfig

from rlhf_worker.training.artifacts import (
    BUILD_METRICS_FILE,
    load_causal_lm,
    load_tokenizer,
    save_model,
)
from rlhf_worker.training.bootstrap import (
    TinyModelConfig,
    build_tiny_model,
    load_bootstrap_corpus,
)
from rlhf_worker.training.format import encode_prompt
from rlhf_worker.training.generate import SamplingConfig, sample_completions
from rlhf_worker.training.tokenizer import TokenizerConfig, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "labelapp" / "data"
BASE_MODEL = ROOT / "artifacts" / "tiny-base-model"
CPU = torch.device("cpu")


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = (
        [ln for ln in cpuinfo.read_text().splitlines() if "model name" in ln]
        if cpuinfo.exists()
        else []
    )
    return names[0].split(":", 1)[1].strip() if names else platform.machine()


def load_prompts(n: int) -> list[str]:
    """The first n shipped user-oriented instructions, deduplicated, in a fixed order."""
    with (DATA / "self_instruct_user_oriented.jsonl").open(encoding="utf-8") as f:
        return sorted({json.loads(line)["prompt"] for line in f if line.strip()})[:n]


def random_model(directory: Path) -> Path:
    """A random-weight model shaped like the bootstrapped one, its tokenizer trained here."""
    corpus, demonstrations = load_bootstrap_corpus(DATA)
    texts = [*corpus, *(p + "\n" + a for p, a in demonstrations)]
    tokenizer = train_tokenizer(texts, TokenizerConfig())
    return save_model(build_tiny_model(tokenizer, TinyModelConfig()), tokenizer, directory)


@torch.inference_mode()
def per_prompt_loop(model_dir: Path, prompts: list[str], config: SamplingConfig) -> int:
    """One generate call per prompt per sample; returns the completion tokens up to EOS."""
    tokenizer = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir, device=CPU, dtype=torch.float32).eval()
    hf_config = HFGenerationConfig(
        do_sample=True,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=0,
        max_new_tokens=config.max_new_tokens,
        num_return_sequences=1,
        use_cache=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(config.seed)
    tokens = 0
    for prompt in prompts:
        ids = encode_prompt(tokenizer, prompt)[-config.max_prompt_length :]
        input_ids = torch.tensor([ids])
        for _ in range(config.k):
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=hf_config,
            )[0, len(ids) :].tolist()
            if tokenizer.eos_token_id in out:
                out = out[: out.index(tokenizer.eos_token_id) + 1]
            tokenizer.decode(out, skip_special_tokens=True)  # as the worker does
            tokens += len(out)
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="A model directory (default: see the module docstring).")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16, help="Prompts per batch in (a).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompts = load_prompts(args.prompts)
    config = SamplingConfig(
        k=args.k, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed
    )

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model_dir, source = Path(args.model), args.model
        elif (BASE_MODEL / BUILD_METRICS_FILE).exists():
            model_dir, source = BASE_MODEL, "artifacts/tiny-base-model (bootstrapped)"
        else:
            model_dir, source = random_model(Path(tmp) / "random"), "random weights, built here"
        parameters = sum(p.numel() for p in load_causal_lm(model_dir, device=CPU).parameters())
        sample_completions(model_dir, prompts[:2], config)  # warm-up: file cache, kernels

        started = time.monotonic()
        batched = sample_completions(model_dir, prompts, config)
        batched_seconds = time.monotonic() - started
        started = time.monotonic()
        loop_tokens = per_prompt_loop(model_dir, prompts, config)
        loop_seconds = time.monotonic() - started

    completions = [c for cs in batched.completions for c in cs]
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, {args.threads} torch threads, no GPU "
        f"used; load average {os.getloadavg()[0]:.1f} at the end; python "
        f"{platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )
    print(f"model: {source}, {parameters / 1e6:.2f}M parameters")
    print(
        f"{len(prompts)} prompts x K={config.k}, max_new_tokens {config.max_new_tokens}, "
        f"temperature {config.temperature}, top_p {config.top_p}, seed {config.seed}; "
        f"batched: {config.batch_size} prompts per batch; "
        f"{sum(c['finished'] for c in completions) / len(completions):.0%} of (a)'s completions "
        "end with EOS"
    )
    rows = (
        ("(a) batched (ours)", batched.metrics["sampled_tokens"], batched_seconds),
        ("(b) per-prompt loop", loop_tokens, loop_seconds),
    )
    for name, tokens, seconds in rows:
        print(f"{name:20s} {tokens:7d} tokens {seconds:7.1f} s {tokens / seconds:8.1f} tokens/s")
    print(
        f"(a)'s own metrics: {batched.metrics['tokens_per_second']:.1f} tokens/s over "
        f"{batched.metrics['seconds']:.1f} s of sampling (loading and decoding excluded)"
    )
    ratio = (rows[0][1] / rows[0][2]) / (rows[1][1] / rows[1][2])
    print(f"speed-up (tokens/s): {ratio:.1f}x")


if __name__ == "__main__":
    main()
