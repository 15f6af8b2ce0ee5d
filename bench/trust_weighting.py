"""Trust weighting: reward-model accuracy with and without each ranking weighted by its labeler's
trust, on the same labels, when one labeler in four ranks at random (or, --bad reverse, in the
reverse of the preference, consistently).

Four simulated labelers rank the policy's K=4 answers: three by a hidden preference (ties in
random order, as `simulate_labelers` does; with probability --noise one adjacent pair swapped),
one at random (`random`), or by the reverse of the preference (`reverse`: an adversary, with
the honest ones' slips). Every labeled prompt is ranked by 2 of the 4, drawn at random, so that each
labeler can be measured against another. Trust comes from the product's own checks and formula
(the pair judgements of services.agreement, pooled as quality.labeler_stats pools them, and
services.trust.trust_score): agreement with the other labeler of each prompt
(majority_agreement), with an admin's gold ranking on --gold of the prompts (by the hidden
preference), and with the labeler's own hidden repeats of --repeats of their prompts (ranked
again; repeats do not train). Then, per seed, one reward model is trained from the policy on
the same rankings with every weight 1 (`off`) and with each ranking weighted by its labeler's
trust (`on`); `oracle` (optional) drops the bad labeler's rankings, as if it were known to
be bad. Each is scored on held-out prompts as bench/label_efficiency.py scores: the share of
the answer pairs the hidden preference orders strictly that the reward model orders alike.

    .venv/bin/python bench/trust_weighting.py --base artifacts/tiny-base-model \
        --preference word:the --prompts 320 --gold 24 --repeats 12 --modes off on oracle
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import django
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelapp.settings")
django.setup()  # services.agreement reads labelapp's models module (no database is used)

from bench.label_efficiency import strict_accuracy  # noqa: E402
from bench.loop_learns import prompts_pool  # noqa: E402
from labelapp.management.simulation import preference, rank_by  # noqa: E402
from labelapp.services.agreement import majority_agreement, pairwise_agreement  # noqa: E402
from labelapp.services.trust import trust_score  # noqa: E402
from rlhf_worker.training.generate import SamplingConfig, generate_completions  # noqa: E402
from rlhf_worker.training.reward import (  # noqa: E402
    RankedExample,
    RewardConfig,
    train_reward_model,
)

HONEST = ["honest-1", "honest-2", "honest-3"]
BAD = ("random", "reverse")
MODES = ("off", "on", "oracle")


def ranking(labeler: str, prompt: str, answers: list[str], prefer, noise: float, rng) -> list:
    """A labeler's ranking of a prompt's answers, as answer indices best first."""
    if labeler == "random":
        order = list(range(len(answers)))
        rng.shuffle(order)
        return order
    task = {
        "prompt": {"text": prompt},
        "completions": [{"label": i, "text": t} for i, t in enumerate(answers)],
    }
    order = rank_by(prefer, task, rng)
    if rng.random() < noise:  # a slip: one adjacent pair the other way round
        i = rng.randrange(len(order) - 1)
        order[i], order[i + 1] = order[i + 1], order[i]
    return order[::-1] if labeler == "reverse" else order


def label(seed: int, pool: list[str], answers: dict, prefer, args) -> tuple[list, dict, dict]:
    """(rankings as (labeler, prompt, order), {labeler: trust}, {labeler: [agreeing, pairs]})
    for one seed's simulation."""
    rng = random.Random(seed)
    labelers = [*HONEST, args.bad]
    rankings = [
        (labeler, prompt, ranking(labeler, prompt, answers[prompt], prefer, args.noise, rng))
        for prompt in pool
        for labeler in rng.sample(labelers, 2)
    ]
    # The evidence per labeler, [agreeing, pairs], pooled over the three checks.
    evidence = {name: [0.0, 0] for name in labelers}

    def count(labeler: str, agreeing: float, pairs: int) -> None:
        evidence[labeler][0] += agreeing
        evidence[labeler][1] += pairs

    by_prompt: dict[str, list] = {}
    for labeler, prompt, order in rankings:
        by_prompt.setdefault(prompt, []).append((labeler, order))
    for ranked in by_prompt.values():  # agreement with the other labeler of the prompt
        for i, (labeler, own) in enumerate(ranked):
            others = [order for j, (_, order) in enumerate(ranked) if j != i]
            count(labeler, *majority_agreement(own, others))
    gold_prompts = rng.sample(pool, args.gold)
    for prompt in gold_prompts:  # the admin's gold ranking, by the hidden preference
        gold = ranking("admin", prompt, answers[prompt], prefer, 0.0, rng)
        for labeler, own in by_prompt[prompt]:
            count(labeler, *pairwise_agreement([own, gold]))
    for labeler in labelers:  # hidden repeats: the same answers ranked again
        own = [(p, o) for name, p, o in rankings if name == labeler]
        for prompt, first in rng.sample(own, min(args.repeats, len(own))):
            again = ranking(labeler, prompt, answers[prompt], prefer, args.noise, rng)
            count(labeler, *pairwise_agreement([first, again]))
    trust = {name: trust_score(agreeing, pairs) for name, (agreeing, pairs) in evidence.items()}
    return rankings, trust, evidence


def examples(rankings: list, answers: dict, weight_of: dict[str, float]) -> list[RankedExample]:
    return [
        RankedExample(prompt, [answers[prompt][i] for i in order], weight=weight_of[labeler])
        for labeler, prompt, order in rankings
    ]


def weights(mode: str, trust: dict[str, float]) -> dict[str, float]:
    if mode == "off":
        return dict.fromkeys(trust, 1.0)
    if mode == "on":
        return trust
    return {name: 1.0 if name in HONEST else 0.0 for name in trust}  # oracle


def summarize(results: dict[str, list[float]], trusts: list[dict]) -> None:
    seeds = len(trusts)
    print(f"\nRM held-out accuracy (strict pairs), mean ± sd over {seeds} seeds")
    for mode, accuracies in results.items():
        sd = statistics.stdev(accuracies) if seeds > 1 else 0.0
        runs = " ".join(f"{a:.3f}" for a in accuracies)
        print(f"  {mode:7} {statistics.mean(accuracies):.3f} ± {sd:.3f}   (seeds: {runs})")
    print("trust per labeler (seeds in order)")
    for name in trusts[0]:
        print(f"  {name:9} " + " ".join(f"{t[name]:.3f}" for t in trusts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="The policy (and the RM's start).")
    parser.add_argument("--preference", default="word:the")
    parser.add_argument(
        "--prompts", type=int, default=160, help="Labeled prompts, 2 rankings each."
    )
    parser.add_argument("--held-out", type=int, default=96)
    parser.add_argument("--gold", type=int, default=16, help="Labeled prompts with a gold ranking.")
    parser.add_argument("--repeats", type=int, default=8, help="Hidden repeats per labeler.")
    parser.add_argument("--noise", type=float, default=0.1, help="An honest labeler's slip rate.")
    parser.add_argument("--bad", choices=BAD, default="random", help="The fourth labeler.")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rm-epochs", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--modes", nargs="+", default=["off", "on"], choices=MODES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="Write the results here as JSON too.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    prefer = preference(args.preference)
    prompts = prompts_pool()
    if args.held_out + args.prompts > len(prompts) or args.gold > args.prompts:
        parser.error(f"{len(prompts)} prompts in all: --held-out + --prompts, --gold too many")
    random.Random(0).shuffle(prompts)
    prompts = prompts[: args.held_out + args.prompts]
    held_out_prompts, pool = prompts[: args.held_out], prompts[args.held_out :]
    started = time.monotonic()
    sampling = SamplingConfig(k=4, max_new_tokens=args.max_new_tokens, seed=0)
    samples = generate_completions(args.base, prompts, sampling)
    answers = {p: [s["text"] for s in out] for p, out in zip(prompts, samples, strict=True)}
    held_out = [(p, answers[p]) for p in held_out_prompts]
    print(f"{len(prompts)} prompts answered in {time.monotonic() - started:.0f} s", flush=True)
    results: dict[str, list[float]] = {mode: [] for mode in args.modes}
    trusts = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            rankings, trust, evidence = label(seed, pool, answers, prefer, args)
            trusts.append(trust)
            shown = ", ".join(f"{n} {trust[n]:.3f} ({evidence[n][1]} pairs)" for n in trust)
            print(f"seed {seed}: {len(rankings)} rankings; trust {shown}", flush=True)
            for mode in args.modes:
                out = Path(tmp) / f"{mode}-{seed}"
                config = RewardConfig(epochs=args.rm_epochs, eval_fraction=0.0, seed=seed)
                batch = examples(rankings, answers, weights(mode, trust))
                train_reward_model(args.base, batch, out, config)
                results[mode].append(strict_accuracy(out, held_out, prefer))
                print(f"  {mode:7} accuracy {results[mode][-1]:.3f}", flush=True)
    summarize(results, trusts)
    print(f"total {time.monotonic() - started:.0f} s, {args.threads} thread(s)")
    if args.json:
        saved = {"args": vars(args), "accuracy": results, "trust": trusts}
        Path(args.json).write_text(json.dumps(saved, indent=1))


if __name__ == "__main__":
    main()
