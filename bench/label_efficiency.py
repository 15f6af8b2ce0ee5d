"""Label efficiency: reward-model accuracy per number of labeled prompts, uncertain vs random.

A simulated labeler ranks the policy's K=4 answers by a hidden preference. Both modes start from
the same random prompts; then, to reach each budget, `random` adds prompts at random and
`uncertain` adds those whose answers the current reward model separates least, out of a
candidate pool `--pool-factor` times the batch (labelapp.services.selection.least_separated,
the product's own choice). After each budget a reward model is trained from the policy on all
labels so far (the worker's K-wise loop) and scored on the same held-out prompts: the share of
the pairs the preference orders strictly that it orders the same way. The policy's answers are
sampled once up front (the policy does not change while only the reward model trains).

    .venv/bin/python bench/label_efficiency.py --base artifacts/tiny-base-model \
        --preference file:bench/preferences/on_topic.py --budgets 32 64 128 256 --seeds 3
"""

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loop_learns import prompts_pool  # noqa: E402
from labelapp.management.simulation import preference  # noqa: E402
from labelapp.services.selection import least_separated  # noqa: E402
from rlhf_worker.training.generate import SamplingConfig, generate_completions  # noqa: E402
from rlhf_worker.training.reward import RewardConfig, score_with, train_reward_model  # noqa: E402


def strict_accuracy(rm_dir: Path, held_out: list[tuple[str, list[str]]], prefer) -> float:
    """Share of held-out answer pairs the preference orders strictly that the RM orders alike."""
    prompts = [p for p, answers in held_out for _ in answers]
    texts = [a for _, answers in held_out for a in answers]
    scores = iter(score_with(rm_dir, prompts, texts))
    correct = pairs = 0
    for prompt, answers in held_out:
        rewards = [next(scores) for _ in answers]
        for i, j in combinations(range(len(answers)), 2):
            hidden = prefer(prompt, answers[i]) - prefer(prompt, answers[j])
            if hidden:
                pairs += 1
                correct += (rewards[i] - rewards[j]) * hidden > 0
    return correct / pairs


def run(mode: str, seed: int, answers: dict, pool: list[str], held_out, args, prefer, tmp: Path):
    """RM accuracy at each budget for one mode and seed."""
    rng = random.Random(seed)
    unlabeled = list(pool)
    rng.shuffle(unlabeled)
    labeled = [unlabeled.pop() for _ in range(args.start)]
    config = RewardConfig(epochs=args.rm_epochs, eval_fraction=0.0, seed=seed)
    rm_dir = tmp / f"{mode}-{seed}-start"
    train_reward_model(args.base, ranked(labeled, answers, prefer), rm_dir, config)
    curve = []
    for budget in args.budgets:
        need = budget - len(labeled)
        if mode == "random":
            chosen = unlabeled[:need]
        else:
            candidates = unlabeled[: need * args.pool_factor]
            flat = [(p, a) for p in candidates for a in answers[p]]
            rewards = iter(score_with(rm_dir, [p for p, _ in flat], [a for _, a in flat]))
            scored = {i: [(a, next(rewards)) for a in answers[p]] for i, p in enumerate(candidates)}
            chosen = [candidates[i] for i, _ in least_separated(scored, need)]
        labeled += chosen
        unlabeled = [p for p in unlabeled if p not in set(chosen)]
        rm_dir = tmp / f"{mode}-{seed}-{budget}"
        train_reward_model(args.base, ranked(labeled, answers, prefer), rm_dir, config)
        curve.append(strict_accuracy(rm_dir, held_out, prefer))
        print(f"{mode:9} seed {seed} {budget:4} labeled: accuracy {curve[-1]:.3f}", flush=True)
    return curve


def ranked(prompts: list[str], answers: dict, prefer) -> list[tuple[str, list[str]]]:
    """The simulated labeler's rankings, best first."""
    return [(p, sorted(answers[p], key=lambda t: -prefer(p, t))) for p in prompts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="The policy (and the RM's start).")
    parser.add_argument("--preference", default="file:bench/preferences/on_topic.py")
    parser.add_argument("--budgets", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--start", type=int, default=16, help="Random labels before any choice.")
    parser.add_argument("--held-out", type=int, default=96)
    parser.add_argument("--pool-factor", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rm-epochs", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="Write the results here as JSON too.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    prefer = preference(args.preference)
    prompts = prompts_pool()
    random.Random(0).shuffle(prompts)
    held_out_prompts, pool = prompts[: args.held_out], prompts[args.held_out :]
    if args.budgets[-1] > len(pool):
        parser.error(f"the largest budget is above the {len(pool)} prompts left to label")
    started = time.monotonic()
    sampling = SamplingConfig(k=4, max_new_tokens=args.max_new_tokens, seed=0)
    samples = generate_completions(args.base, prompts, sampling)
    answers = {p: [s["text"] for s in out] for p, out in zip(prompts, samples, strict=True)}
    held_out = ranked(held_out_prompts, answers, prefer)
    print(f"{len(prompts)} prompts answered in {time.monotonic() - started:.0f} s", flush=True)
    curves = {"random": [], "uncertain": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for mode in curves:
                curves[mode].append(
                    run(mode, seed, answers, pool, held_out, args, prefer, Path(tmp))
                )
    print(f"\nRM held-out accuracy (strict pairs), mean ± sd over {args.seeds} seeds")
    print("labeled   random          uncertain")
    means = {}
    for i, budget in enumerate(args.budgets):
        row = {}
        for mode, runs in curves.items():
            values = [r[i] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            row[mode] = (statistics.mean(values), sd)
        means[budget] = row
        print(
            f"{budget:7}   {row['random'][0]:.3f} ± {row['random'][1]:.3f}   "
            f"{row['uncertain'][0]:.3f} ± {row['uncertain'][1]:.3f}"
        )
    # Labels saved: the smallest uncertain budget that reaches random's accuracy at each budget.
    for budget in args.budgets:
        target = means[budget]["random"][0]
        reached = [b for b in args.budgets if means[b]["uncertain"][0] >= target]
        if reached:
            print(f"random's accuracy at {budget} labels: uncertain reaches it at {reached[0]}")
        else:
            print(f"random's accuracy at {budget} labels: uncertain never reaches it")
    print(f"total {time.monotonic() - started:.0f} s, {args.threads} thread(s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "curves": curves}, indent=1))


if __name__ == "__main__":
    main()
