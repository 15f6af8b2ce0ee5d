"""One full round of the loop on a GPU: generate, train the reward model, PPO; time and memory.

No hub is needed: the model is built from a config with random weights (GPT-2-small-sized by
default, or Qwen2-0.5B-sized, both as Llama configs) on the project's own BPE tokenizer, trained
here on the shipped corpus. Then, with the worker's own functions (rlhf_worker.training):

1. generate: K=4 completions for each of 256 shipped prompts (bf16 on CUDA, transformers);
2. reward model: K-wise training on those completions, ranked shorter-is-better (a stand-in
   for labelers; random weights give random text, so only the cost is meaningful here);
3. PPO: a fixed number of steps (episodes = steps x batch size) against that reward model,
   once per --lora-r value (0 = all weights trained, a second policy copy as reference; r > 0 =
   LoRA adapters, the reference is the same weights with the adapters off);
4. generate again with vLLM, last (it reserves most of the GPU), when it is installed.

Per phase: wall seconds (loading and saving included), tokens, tokens/s and peak GPU memory
(torch.cuda.max_memory_allocated; vLLM's memory is its own and not seen by torch).

    .venv/bin/python bench/gpu_round.py                        # on a GPU host, ~5-10 min
    .venv/bin/python bench/gpu_round.py --size qwen2-0.5b --lora-r 0 16 --engine transformers vllm
    .venv/bin/python bench/gpu_round.py --tiny                 # a seconds-long check on a CPU
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from rlhf_worker.training.artifacts import load_tokenizer, pick_device, save_model
from rlhf_worker.training.bootstrap import load_bootstrap_corpus
from rlhf_worker.training.generate import SamplingConfig, sample_completions
from rlhf_worker.training.ppo import PPOConfig, train_ppo
from rlhf_worker.training.reward import (
    RankedExample,
    RewardConfig,
    encode_for_reward,
    is_held_out,
    train_reward_model,
)
from rlhf_worker.training.tokenizer import TokenizerConfig, train_tokenizer

DATA = Path(__file__).resolve().parents[1] / "labelapp" / "data"

# Llama-style shapes: (hidden, layers, attention heads, key/value heads, MLP width).
SIZES = {
    "tiny": (64, 2, 4, 4, 128),
    "gpt2-small": (768, 12, 12, 12, 3072),
    "qwen2-0.5b": (896, 24, 14, 2, 4864),
}
# Defaults of the GPU run and of the --tiny check; any flag given overrides them.
PRESETS = {
    "gpu": {
        "size": "gpt2-small",
        "vocab_size": 4096,
        "prompts": 256,
        "max_new_tokens": 128,
        "gen_batch_size": 64,
        "rm_batch_size": 8,
        "ppo_steps": 16,
        "ppo_batch_size": 64,
        "ppo_mini_batch_size": 16,
        "ppo_max_new_tokens": 64,
        "lora_r": [0, 16],
    },
    "tiny": {
        "size": "tiny",
        "vocab_size": 1024,
        "prompts": 8,
        "max_new_tokens": 16,
        "gen_batch_size": 8,
        "rm_batch_size": 4,
        "ppo_steps": 2,
        "ppo_batch_size": 4,
        "ppo_mini_batch_size": 2,
        "ppo_max_new_tokens": 8,
        "lora_r": [0, 8],
    },
}


def load_prompts(n: int) -> list[str]:
    """n shipped instructions: the user-oriented ones, then the seed tasks, in a fixed order."""
    prompts: list[str] = []
    for name in ("self_instruct_user_oriented.jsonl", "self_instruct_seed_tasks.jsonl"):
        with (DATA / name).open(encoding="utf-8") as f:
            rows = sorted({json.loads(line)["prompt"] for line in f if line.strip()})
        prompts += [p for p in rows if p not in prompts]
    return prompts[:n]


def build_model(tokenizer: PreTrainedTokenizerBase, size: str) -> LlamaForCausalLM:
    """A randomly initialised Llama-style causal LM of `size` on `tokenizer` (float32)."""
    torch.manual_seed(0)
    hidden, layers, heads, kv_heads, mlp = SIZES[size]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def measure(device: torch.device, run: Callable[[], dict]) -> tuple[dict, float, float | None]:
    """(run's result, wall seconds, peak GPU MiB during it, None off CUDA)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.monotonic()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.monotonic() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return result, seconds, peak


def versions() -> str:
    names = ("torch", "transformers", "trl", "peft", "accelerate", "vllm")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def machine(device: torch.device) -> str:
    cpu = platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    text = (
        f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        text += (
            f"; GPU {props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
        )
    return text + f"; python {platform.python_version()}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="A tiny model and round, for a CPU.")
    parser.add_argument("--size", choices=sorted(SIZES))
    parser.add_argument("--vocab-size", type=int)
    parser.add_argument("--prompts", type=int)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--gen-batch-size", type=int, help="Prompts per generate call.")
    parser.add_argument("--rm-epochs", type=int, default=1)
    parser.add_argument("--rm-batch-size", type=int, help="Rankings per reward model step.")
    parser.add_argument("--ppo-steps", type=int)
    parser.add_argument("--ppo-batch-size", type=int)
    parser.add_argument("--ppo-mini-batch-size", type=int)
    parser.add_argument("--ppo-max-new-tokens", type=int)
    parser.add_argument("--lora-r", type=int, nargs="+", help="One PPO run per rank; 0 = full.")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument(
        "--engine",
        nargs="+",
        default=["transformers", "vllm"],
        choices=["transformers", "vllm"],
        help="Generation engines to time. transformers always runs (its completions train the "
        "reward model); vllm runs last, where it is installed.",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    args = parser.parse_args()
    for name, value in PRESETS["tiny" if args.tiny else "gpu"].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


# One line of the result table: phase, wall seconds, tokens, peak GPU MiB (or None), note.
Row = tuple[str, float, int, float | None, str]


def generate_phase(
    device: torch.device, base: Path, prompts: list[str], config: SamplingConfig
) -> tuple[Row, list[list[dict]]]:
    generation, seconds, peak = measure(device, lambda: sample_completions(base, prompts, config))
    note = f"sampling alone {generation.metrics['tokens_per_second']:.0f} tokens/s"
    if config.engine == "vllm":
        peak = None  # vLLM's KV cache pool is not torch's to count
    name = f"generate ({config.engine})"
    return (name, seconds, generation.metrics["sampled_tokens"], peak, note), generation.completions


def reward_phase(
    device: torch.device, base: Path, rankings: list[RankedExample], out: Path, args
) -> Row:
    config = RewardConfig(epochs=args.rm_epochs, batch_size=args.rm_batch_size)
    reward, seconds, peak = measure(device, lambda: train_reward_model(base, rankings, out, config))
    train = [r for r in rankings if not is_held_out(r.prompt, config.eval_fraction)]
    tokenizer = load_tokenizer(base)
    encoded = encode_for_reward(
        tokenizer,
        [r.prompt for r in train for _ in r.completions],
        [c for r in train for c in r.completions],
        config.max_length,
    )
    tokens = int(encoded["attention_mask"].sum()) * args.rm_epochs  # what the forwards read
    accuracy = reward["eval_accuracy"]
    note = f"{len(train)} rankings; held-out accuracy {accuracy and round(accuracy, 2)}"
    return ("reward model (K-wise)", seconds, tokens, peak, note)


def ppo_phase(
    device: torch.device, base: Path, rm: Path, prompts: list[str], out: Path, rank: int, args
) -> Row:
    config = PPOConfig(
        steps=args.ppo_steps,
        batch_size=args.ppo_batch_size,
        mini_batch_size=args.ppo_mini_batch_size,
        max_new_tokens=args.ppo_max_new_tokens,
        lora_r=rank,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    summary, seconds, peak = measure(device, lambda: train_ppo(base, rm, prompts, out, config))
    tokens = sum(round(m["mean_response_length"] * config.batch_size) for m in summary["steps"])
    note = (
        f"{config.steps * config.batch_size} episodes; "
        f"{summary['trainable_policy_parameters'] / 1e6:.2f}M trainable policy parameters; "
        f"reward {summary['first_mean_reward']:.2f} -> {summary['last_mean_reward']:.2f}"
    )
    return ("PPO full" if rank == 0 else f"PPO LoRA r={rank}", seconds, tokens, peak, note)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus, demonstrations = load_bootstrap_corpus(DATA)
        tokenizer = train_tokenizer(
            [*corpus, *(p + "\n" + a for p, a in demonstrations)],
            TokenizerConfig(vocab_size=args.vocab_size),
        )
        model = build_model(tokenizer, args.size)
        parameters = sum(p.numel() for p in model.parameters())
        base = save_model(model, tokenizer, tmp / "base")
        del model
        prompts = load_prompts(args.prompts)
        print(f"machine: {machine(device)}")
        print(f"versions: {versions()}")
        print(
            f"model: {args.size} Llama config, random weights, {parameters / 1e6:.1f}M parameters, "
            f"vocab {len(tokenizer)}; generation in "
            f"{'bf16' if device.type == 'cuda' else 'fp32'}, RM and PPO in fp32"
        )
        print(
            f"round: {len(prompts)} prompts x K={args.k}, {args.max_new_tokens} new tokens, "
            f"{args.gen_batch_size} prompts per generate call; RM {args.rm_epochs} epoch(s), "
            f"{args.rm_batch_size} rankings per step; PPO {args.ppo_steps} steps x "
            f"{args.ppo_batch_size} episodes (minibatch {args.ppo_mini_batch_size}, 4 epochs), "
            f"{args.ppo_max_new_tokens} new tokens, gradient checkpointing "
            f"{'on' if args.gradient_checkpointing else 'off'}",
            flush=True,
        )

        # 1. Generate with transformers: these completions train the reward model.
        sampling = SamplingConfig(
            k=args.k, max_new_tokens=args.max_new_tokens, batch_size=args.gen_batch_size
        )
        row, completions = generate_phase(device, base, prompts, sampling)
        rows = [row]
        # 2. Reward model on rankings by a simple preference: shorter is better.
        rankings = [
            RankedExample(p, sorted((c["text"] for c in cs), key=len))
            for p, cs in zip(prompts, completions, strict=True)
        ]
        rows.append(reward_phase(device, base, rankings, tmp / "rm", args))
        # 3. PPO against it, full and LoRA.
        for rank in args.lora_r:
            out = tmp / f"ppo-r{rank}"
            rows.append(ppo_phase(device, base, tmp / "rm", prompts, out, rank, args))
        # 4. vLLM last: it keeps most of the GPU while it lives.
        vllm_runs = importlib.util.find_spec("vllm") is not None and device.type == "cuda"
        if "vllm" in args.engine and vllm_runs:
            vllm = SamplingConfig(**{**vars(sampling), "engine": "vllm"})
            rows.append(generate_phase(device, base, prompts, vllm)[0])
        elif "vllm" in args.engine:
            print("generate (vllm): skipped, vllm is not installed here or there is no GPU")

    print(f"{'phase':24s} {'wall s':>8s} {'tokens':>9s} {'tokens/s':>9s} {'peak GPU MiB':>13s}")
    for name, seconds, tokens, peak, note in rows:
        memory = f"{peak:13.0f}" if peak is not None else f"{'n/a':>13s}"
        print(f"{name:24s} {seconds:8.1f} {tokens:9d} {tokens / seconds:9.0f} {memory}   {note}")


if __name__ == "__main__":
    main()
