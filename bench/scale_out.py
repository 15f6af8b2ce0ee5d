"""Scale-out of a training step: step time and tokens/s for 1, 2, 4, 8 ... processes, and the
share of a step spent on the gradient all-reduce.

    .venv/bin/python bench/scale_out.py [--model tiny|DIR] [--processes 1 2] [--threads 1]
        [--steps 6] [--batch-size 8] [--k 4] [--max-length 64] [--top-layers 0]

Each process count N runs as `accelerate launch` of this file (rlhf_worker.launch's launcher:
N gloo processes on a CPU host, one process per GPU on a GPU host, so on a GPU host
`--processes 1 2 4 8` is the GPU count). Every process runs the K-wise reward model's own
training step (reward._train_step: its share of a global batch of --batch-size rankings of
--k completions, backward, all-reduce, AdamW), so N only splits the same global batch.

Reported per N: mean step time (after one warm-up step), tokens/s (attended tokens of the global
batch per second), and the communication share: every other step runs under
accelerator.no_sync (no gradient all-reduce), and share = 1 - t(no_sync) / t(with all-reduce).
On a CPU host the N processes share its cores: give --threads so that N x threads <= cores.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "labelapp" / "data" / "self_instruct_seed_tasks.jsonl"
MARK = "SCALE_OUT_RESULT "


def rankings(n: int, k: int) -> list[tuple[str, list[str]]]:
    """Real prompts, each with k completions: its human answer cut to k different lengths."""
    rows = [json.loads(line) for line in DATA.read_text().splitlines()][:n]
    out = []
    for row in rows:
        words = row["demonstration"].split()
        out.append(
            (
                row["prompt"],
                [" ".join(words[: max(1, len(words) * (k - i) // k)]) for i in range(k)],
            )
        )
    return out


def tiny_model(directory: Path) -> Path:
    from rlhf_worker.training.artifacts import save_model
    from rlhf_worker.training.bootstrap import TinyModelConfig, build_tiny_model
    from rlhf_worker.training.tokenizer import TokenizerConfig, train_tokenizer

    texts = [t for p, c in rankings(200, 2) for t in (p, *c)]
    tokenizer = train_tokenizer(texts, TokenizerConfig(vocab_size=1024))
    config = TinyModelConfig(hidden_size=64, num_layers=2, intermediate_size=128)
    return save_model(build_tiny_model(tokenizer, config), tokenizer, directory)


def worker(args: argparse.Namespace) -> None:
    """One launched process: time reward steps with and without the gradient all-reduce."""
    import torch

    from rlhf_worker.training.artifacts import load_reward_model, load_tokenizer
    from rlhf_worker.training.distributed import global_sums, make_accelerator
    from rlhf_worker.training.finetune import train_top_layers
    from rlhf_worker.training.reward import (
        RewardConfig,
        TokenScores,
        _train_step,  # the loop's own step, so the benchmark times what a run does
        encode_for_reward,
    )

    torch.set_num_threads(args.threads)
    accelerator = make_accelerator()
    config = RewardConfig(batch_size=args.batch_size, max_length=args.max_length)
    tokenizer = load_tokenizer(args.model)
    tokenizer.padding_side = "right"
    model = load_reward_model(args.model, device=accelerator.device, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    train_top_layers(model, args.top_layers)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    scorer, optimizer = accelerator.prepare(TokenScores(model), optimizer)
    scorer.train()
    data = rankings(args.batch_size * (args.steps + 1), args.k)
    times: dict[bool, list[float]] = {True: [], False: []}
    tokens = 0
    for step in range(args.steps + 1):
        batch = data[step * args.batch_size : (step + 1) * args.batch_size]
        sync = step % 2 == 0
        accelerator.wait_for_everyone()
        started = time.perf_counter()
        if sync:
            _train_step(accelerator, scorer, optimizer, tokenizer, batch, config)
        else:
            with accelerator.no_sync(scorer):
                _train_step(accelerator, scorer, optimizer, tokenizer, batch, config)
        accelerator.wait_for_everyone()
        if step > 0:  # step 0 warms up
            times[sync].append(time.perf_counter() - started)
            prompts = [p for p, c in batch for _ in c]
            answers = [a for _, c in batch for a in c]
            enc = encode_for_reward(tokenizer, prompts, answers, args.max_length)
            tokens += int(enc["attention_mask"].sum())
    (elapsed,) = global_sums(accelerator, max(sum(times[True]) + sum(times[False]), 1e-9))
    if accelerator.is_main_process:
        elapsed /= accelerator.num_processes
        synced, unsynced = statistics.mean(times[True]), statistics.mean(times[False])
        result = {
            "processes": accelerator.num_processes,
            "device": str(accelerator.device),
            "step_seconds": synced,
            "step_seconds_sd": statistics.stdev(times[True]) if len(times[True]) > 1 else 0.0,
            "step_seconds_no_allreduce": unsynced,
            "communication_share": max(0.0, 1 - unsynced / synced),
            "tokens_per_second": tokens / elapsed,
        }
        print(MARK + json.dumps(result), flush=True)


def run(args: argparse.Namespace, model: Path, processes: int) -> dict:
    from rlhf_worker.launch import LaunchSettings, accelerate_launch

    launch = accelerate_launch(
        LaunchSettings(processes=processes, threads_per_process=args.threads)
    )
    own = ["--model", str(model), "--threads", str(args.threads), "--steps", str(args.steps)]
    own += ["--batch-size", str(args.batch_size), "--k", str(args.k)]
    own += ["--max-length", str(args.max_length), "--top-layers", str(args.top_layers)]
    cmd = [*launch, __file__, "--worker", *own]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    lines = [line for line in out.stdout.splitlines() if line.startswith(MARK)]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{processes} processes failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}")
    return json.loads(lines[0][len(MARK) :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, or a model directory")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--steps", type=int, default=6, help="timed steps, after one warm-up")
    parser.add_argument("--batch-size", type=int, default=8, help="rankings per global batch")
    parser.add_argument("--k", type=int, default=4, help="completions per ranking")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--top-layers", type=int, default=0, help="0 trains every layer")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(Path(tmp) / "tiny") if args.model == "tiny" else Path(args.model)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"GPUs: {torch.cuda.device_count()}; torch {torch.__version__}; "
              f"load average before: {load}")  # fmt: skip
        print(f"model: {args.model}; global batch {args.batch_size} rankings x K={args.k}, "
              f"max_length {args.max_length}, {args.threads} thread(s) per process, "
              f"top_layers {args.top_layers}, {args.steps} timed steps")  # fmt: skip
        print("processes  step_s (sd)      no_allreduce_s  comm_share  tokens/s")
        for n in args.processes:
            r = run(args, model, n)
            print(
                f"{n:>9}  {r['step_seconds']:.3f} ({r['step_seconds_sd']:.3f})  "
                f"{r['step_seconds_no_allreduce']:>14.3f}  {r['communication_share']:>10.0%}  "
                f"{r['tokens_per_second']:>8.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
