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
from rlhf_worker.training.reward import (  # noqa: E402
    RankedExample,
    RewardConfig,
    score_with,
    train_reward_model,
)


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


def scores_of(rm_dir: Path, prompts: list[str], answers: dict) -> list[list[float]]:
    """A reward model's scores of each prompt's answers."""
    flat = [(p, a) for p in prompts for a in answers[p]]
    rewards = iter(score_with(rm_dir, [p for p, _ in flat], [a for _, a in flat]))
    return [[next(rewards) for _ in answers[p]] for p in prompts]


def disagreement(members: list[list[float]]) -> float:
    """How much reward models disagree on the order of one prompt's answers: over the answer
    pairs, 1 - |mean of their signs| (0: all agree, 1: split evenly)."""
    values = []
    for i, j in combinations(range(len(members[0])), 2):
        signs = [(r[i] > r[j]) - (r[i] < r[j]) for r in members]
        values.append(1 - abs(sum(signs)) / len(signs))
    return statistics.mean(values)


def choose(mode: str, candidates: list[str], need: int, rm_dirs: list[Path], answers) -> list[str]:
    """`need` prompts out of `candidates` by the mode's measure (random: the first ones)."""
    if mode == "random":
        return candidates[:need]
    if mode == "uncertain":  # the product's choice: the smallest mean reward gap
        scores = scores_of(rm_dirs[0], candidates, answers)
        scored = {
            i: list(zip(answers[p], r, strict=True))
            for i, (p, r) in enumerate(zip(candidates, scores, strict=True))
        }
        return [candidates[i] for i, _ in least_separated(scored, need)]
    # ensemble: the most disagreement between reward models trained with different seeds
    per_member = [scores_of(d, candidates, answers) for d in rm_dirs]
    split = [disagreement([m[c] for m in per_member]) for c in range(len(candidates))]
    order = sorted(range(len(candidates)), key=lambda c: -split[c])
    return [candidates[c] for c in order[:need]]


def run(mode: str, seed: int, answers: dict, pool: list[str], held_out, args, prefer, tmp: Path):
    """RM accuracy at each budget for one mode and seed."""
    rng = random.Random(seed)
    unlabeled = list(pool)
    rng.shuffle(unlabeled)
    labeled = [unlabeled.pop() for _ in range(args.start)]
    members = args.ensemble if mode == "ensemble" else 1

    def train(tag: str) -> list[Path]:
        dirs = []
        for m in range(members):  # member 0 has the seed of the other modes' one model
            config = RewardConfig(epochs=args.rm_epochs, eval_fraction=0.0, seed=seed + 100 * m)
            dirs.append(tmp / f"{mode}-{seed}-{tag}-{m}")
            examples = [RankedExample(p, r) for p, r in ranked(labeled, answers, prefer)]
            train_reward_model(args.base, examples, dirs[-1], config)
        return dirs

    rm_dirs = train("start")
    curve = []
    for budget in args.budgets:
        need = budget - len(labeled)
        chosen = choose(mode, unlabeled[: need * args.pool_factor], need, rm_dirs, answers)
        labeled += chosen
        unlabeled = [p for p in unlabeled if p not in set(chosen)]
        rm_dirs = train(str(budget))
        curve.append(strict_accuracy(rm_dirs[0], held_out, prefer))
        print(f"{mode:9} seed {seed} {budget:4} labeled: accuracy {curve[-1]:.3f}", flush=True)
    return curve


def ranked(prompts: list[str], answers: dict, prefer) -> list[tuple[str, list[str]]]:
    """The simulated labeler's rankings, best first."""
    return [(p, sorted(answers[p], key=lambda t: -prefer(p, t))) for p in prompts]


def labels_to_reach(budgets: list[int], means: list[float], target: float) -> float | None:
    """Labels a curve needs to reach `target`, linear between the budgets measured."""
    if means[0] >= target:
        return float(budgets[0])
    for i in range(1, len(budgets)):
        (b0, m0), (b1, m1) = (budgets[i - 1], means[i - 1]), (budgets[i], means[i])
        if m0 < target <= m1:
            return b0 + (b1 - b0) * (target - m0) / (m1 - m0)
    return None


def summarize(budgets: list[int], curves: dict[str, list[list[float]]]) -> None:
    """Mean ± sd per budget and mode, and the labels each mode needs for random's accuracy."""
    seeds = len(next(iter(curves.values())))
    print(f"\nRM held-out accuracy (strict pairs), mean ± sd over {seeds} seeds")
    print("labeled" + "".join(f"   {mode:14}" for mode in curves))
    means = {}
    for mode, runs in curves.items():
        means[mode] = [statistics.mean(r[i] for r in runs) for i in range(len(budgets))]
    for i, budget in enumerate(budgets):
        cells = []
        for mode, runs in curves.items():
            sd = statistics.stdev(r[i] for r in runs) if seeds > 1 else 0.0
            cells.append(f"{means[mode][i]:.3f} ± {sd:.3f}")
        print(f"{budget:7}   " + "   ".join(cells))
    for mode in [m for m in curves if m != "random" and "random" in curves]:
        for i, budget in enumerate(budgets):
            target = means["random"][i]
            needed = labels_to_reach(budgets, means[mode], target)
            if needed is None:
                print(f"random's {target:.3f} at {budget} labels: {mode} does not reach it")
            else:
                change = (needed - budget) / budget
                print(
                    f"random's {target:.3f} at {budget} labels: {mode} reaches it at about "
                    f"{needed:.0f} ({change:+.0%} labels)"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", help="The policy (and the RM's start).")
    parser.add_argument("--preference", default="file:bench/preferences/on_topic.py")
    parser.add_argument("--budgets", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--start", type=int, default=16, help="Random labels before any choice.")
    parser.add_argument("--held-out", type=int, default=96)
    parser.add_argument("--pool-factor", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rm-epochs", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--modes", nargs="+", default=["random", "uncertain"], help="random, uncertain, ensemble"
    )
    parser.add_argument("--ensemble", type=int, default=3, help="Reward models in `ensemble`.")
    parser.add_argument("--json", help="Write the results here as JSON too.")
    parser.add_argument("--summarize", help="Only print the summary of a --json file.")
    args = parser.parse_args()
    if args.summarize:
        saved = json.loads(Path(args.summarize).read_text())
        summarize(saved["args"]["budgets"], saved["curves"])
        return
    if not args.base:
        parser.error("--base is required")
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
    curves = {mode: [] for mode in args.modes}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for mode in curves:
                curves[mode].append(
                    run(mode, seed, answers, pool, held_out, args, prefer, Path(tmp))
                )
    summarize(args.budgets, curves)
    print(f"total {time.monotonic() - started:.0f} s, {args.threads} thread(s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "curves": curves}, indent=1))


if __name__ == "__main__":
    main()
