"""Does the loop learn? Simulated labelers with a hidden preference, several rounds, win rate.

Each round: the current policy samples K=4 answers for the round's prompts, a simulated labeler
ranks them by the hidden preference, a reward model is trained on all rankings so far (K-wise),
and PPO improves the policy against it, with KL to the round's start and to v1 (the anchor).
At the end every version answers held-out prompts (one greedy answer each); the win rate of the
last version over v1 is judged by the same preference (ties count half), and each version's KL
to v1 is estimated on its own answers. The ML is the worker's own (rlhf_worker.training); the
web/worker plumbing is left out. The guards against reward hacking can be switched off one by
one (--anchor-kl 0, --no-normalize, --eos-penalty 0) to measure what each does.

After each round the product's audit runs too (labelapp.services.selection): the new version
answers the round's prompts, the reward model scores its answers and the old version's, the
--audit answers it likes most are paired with the old version's, and a simulated auditor with
the same hidden preference judges each pair. Printed: how often the auditor agrees with the
reward model's order, beside the reward model's held-out accuracy.

    .venv/bin/python bench/loop_learns.py --base artifacts/smollm2-135m-instruct \
        --preference word:water [--rounds 3] [--prompts 64] [--threads 2]
"""

import argparse
import json
import random
import tempfile
import time
from itertools import combinations
from pathlib import Path

import torch

from labelapp.management.simulation import preference
from labelapp.services.selection import Answer, agreement_with_rewards, audit_pairs
from rlhf_worker.training.artifacts import load_causal_lm, load_reward_model, load_tokenizer
from rlhf_worker.training.format import encode_prompt
from rlhf_worker.training.generate import SamplingConfig, generate_completions
from rlhf_worker.training.ppo import PPOConfig, train_ppo
from rlhf_worker.training.reward import (
    RankedExample,
    RewardConfig,
    is_held_out,
    score_completions,
    score_with,
    train_reward_model,
)

DATA = Path(__file__).resolve().parents[1] / "labelapp" / "data"


def prompts_pool() -> list[str]:
    rows = [json.loads(line) for line in (DATA / "self_instruct_user_oriented.jsonl").open()]
    rows += [json.loads(line) for line in (DATA / "self_instruct_seed_tasks.jsonl").open()]
    return sorted({r["prompt"][:400] for r in rows})


def distinct_2(texts: list[str]) -> float:
    bigrams = [tuple(t.split()[i : i + 2]) for t in texts for i in range(len(t.split()) - 1)]
    return len(set(bigrams)) / max(len(bigrams), 1)


def win_rate(prefer, prompts, new: list[list[dict]], old: list[list[dict]]) -> float:
    score = 0.0
    for p, a, b in zip(prompts, new, old, strict=True):
        sa, sb = prefer(p, a[0]["text"]), prefer(p, b[0]["text"])
        score += 1.0 if sa > sb else 0.5 if sa == sb else 0.0
    return score / len(prompts)


@torch.inference_mode()
def answer_logprobs(model_dir: Path, prompts: list[str], answers: list[str]) -> list[float]:
    """log p(answer | prompt) under a model, summed over the answer's tokens (re-tokenised)."""
    model, tokenizer = load_causal_lm(model_dir).eval(), load_tokenizer(model_dir)
    totals = []
    for prompt, answer in zip(prompts, answers, strict=True):
        context = encode_prompt(tokenizer, prompt)
        reply = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([context + reply], device=model.device)
        logits = model(ids).logits[0, len(context) - 1 : -1].float()
        target = ids[0, len(context) :]
        totals.append(logits.log_softmax(-1).gather(-1, target[:, None]).sum().item())
    return totals


def strict_pair_accuracy(
    rm_dir: Path, rankings: list, prefer, config: RewardConfig
) -> tuple[float, int]:
    """The reward model's accuracy on its held-out prompts' pairs that the preference orders
    strictly (a tie, say two answers without the word, was ranked at random and teaches nothing).
    """
    model, tokenizer = load_reward_model(rm_dir).eval(), load_tokenizer(rm_dir)
    correct = pairs = 0
    for prompt, answers in rankings:
        if not is_held_out(prompt, config.eval_fraction):
            continue
        scores = score_completions(model, tokenizer, [prompt] * len(answers), answers).tolist()
        for i, j in combinations(range(len(answers)), 2):
            hidden = prefer(prompt, answers[i]) - prefer(prompt, answers[j])
            if hidden:
                pairs += 1
                correct += (scores[i] - scores[j]) * hidden > 0
    return (correct / pairs if pairs else float("nan")), pairs


def audit_version(
    version: Path, rm_dir: Path, prompts: list[str], old_samples, sampling, prefer, args
) -> dict:
    """The product's audit of a new version, judged by a simulated auditor (module doc)."""
    new_samples = generate_completions(version, prompts, sampling)
    new, old = [], []
    for i, (new_out, old_out) in enumerate(zip(new_samples, old_samples, strict=True)):
        new += [(i, s["text"]) for s in new_out]
        old += [(i, s["text"]) for s in old_out]
    both = new + old
    rewards = score_with(rm_dir, [prompts[i] for i, _ in both], [t for _, t in both])
    answers = [Answer(n, i, t, r) for n, ((i, t), r) in enumerate(zip(both, rewards, strict=True))]
    pairs = audit_pairs(answers[: len(new)], answers[len(new) :], args.audit)
    rng = random.Random(0)
    judged, by_id = [], {a.id: a for a in answers}
    for pair in pairs:
        a, b = pair.new, pair.old
        sa, sb = prefer(prompts[a.prompt_id], a.text), prefer(prompts[b.prompt_id], b.text)
        better = a if sa > sb or (sa == sb and rng.random() < 0.5) else b
        judged.append((better.id, (b if better is a else a).id))
    rewards_of = {pk: answer.reward for pk, answer in by_id.items()}
    return {
        "audit_pairs": len(pairs),
        "audit_agreement": agreement_with_rewards(judged, rewards_of),
        "audit_new_preferred": sum(by_id[w].id < len(new) for w, _ in judged) / len(judged),
        "audit_new_chars": sum(len(p.new.text) for p in pairs) / len(pairs),
        "audit_old_chars": sum(len(p.old.text) for p in pairs) / len(pairs),
    }


def kl_to_first(versions: list[Path], prompts: list[str], answers: list[list[list[dict]]]):
    """KL(v_i || v1) per version, estimated on v_i's own samples: mean log p_i(y) - log p_1(y)."""
    kls = []
    for version, samples in zip(versions, answers, strict=True):
        texts = [s[0]["text"] for s in samples]
        own = answer_logprobs(version, prompts, texts)
        base = answer_logprobs(versions[0], prompts, texts)
        kls.append(sum(a - b for a, b in zip(own, base, strict=True)) / len(prompts))
    return kls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="The base policy directory (v1).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=64, help="Held-out prompts.")
    parser.add_argument("--round-prompts", type=int, default=64, help="New prompts per round.")
    parser.add_argument("--preference", default="shorter")
    parser.add_argument("--ppo-steps", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rm-epochs", type=int, default=2)
    parser.add_argument("--rm-batch-size", type=int, default=RewardConfig.batch_size)
    parser.add_argument("--rm-lr", type=float, default=RewardConfig.learning_rate)
    parser.add_argument("--top-layers", type=int, default=0, help="RM and PPO: train the top N.")
    parser.add_argument("--lora-r", type=int, default=0, help="PPO: LoRA rank (0: full).")
    parser.add_argument("--ppo-lr", type=float, default=PPOConfig.learning_rate)
    parser.add_argument("--kl", type=float, default=PPOConfig.kl_coef)
    parser.add_argument("--anchor-kl", type=float, default=PPOConfig.anchor_kl_coef)
    parser.add_argument("--no-normalize", action="store_true", help="Raw reward-model scores.")
    parser.add_argument("--eos-penalty", type=float, default=PPOConfig.missing_eos_penalty)
    parser.add_argument("--length-penalty", type=float, default=PPOConfig.length_penalty)
    parser.add_argument("--audit", type=int, default=8, help="Answers audited per version.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="Write the results here as JSON too.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prefer = preference(args.preference)
    rng = random.Random(0)
    pool = prompts_pool()
    rng.shuffle(pool)
    held_out, train_pool = pool[: args.prompts], pool[args.prompts :]
    sampling = SamplingConfig(k=4, max_new_tokens=args.max_new_tokens)
    rm_config = RewardConfig(
        epochs=args.rm_epochs,
        batch_size=args.rm_batch_size,
        learning_rate=args.rm_lr,
        top_layers=args.top_layers,
    )
    ppo_config = PPOConfig(
        steps=args.ppo_steps,
        max_new_tokens=args.max_new_tokens,
        top_layers=args.top_layers,
        lora_r=args.lora_r,
        learning_rate=args.ppo_lr,
        kl_coef=args.kl,
        anchor_kl_coef=args.anchor_kl,
        normalize_rewards=not args.no_normalize,
        missing_eos_penalty=args.eos_penalty,
        length_penalty=args.length_penalty,
    )
    versions = [Path(args.base)]
    rounds = []
    rankings: list[tuple[str, list[str]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(1, args.rounds + 1):
            started = time.monotonic()
            n = args.round_prompts
            prompts = train_pool[(number - 1) * n : number * n]
            samples = generate_completions(versions[-1], prompts, sampling)
            for prompt, answers in zip(prompts, samples, strict=True):
                texts = [a["text"] for a in answers]
                rankings.append((prompt, sorted(texts, key=lambda t: -prefer(prompt, t))))
            examples = [RankedExample(prompt, ranked) for prompt, ranked in rankings]
            rm = train_reward_model(versions[-1], examples, Path(tmp) / f"rm{number}", rm_config)
            ppo = train_ppo(
                versions[-1],
                Path(tmp) / f"rm{number}",
                prompts,
                Path(tmp) / f"v{number + 1}",
                ppo_config,
                anchor_dir=versions[0],
            )
            versions.append(Path(tmp) / f"v{number + 1}")
            strict = strict_pair_accuracy(Path(tmp) / f"rm{number}", rankings, prefer, rm_config)
            audit = audit_version(
                versions[-1], Path(tmp) / f"rm{number}", prompts, samples, sampling, prefer, args
            )
            rounds.append(
                {
                    "rm_eval_accuracy": rm["eval_accuracy"],
                    "rm_eval_pairs": rm["eval_pairs"],
                    "rm_strict_accuracy": strict[0],
                    "rm_strict_pairs": strict[1],
                    "ppo_first_mean_reward": ppo["first_mean_reward"],
                    "ppo_last_mean_reward": ppo["last_mean_reward"],
                    **audit,
                    "seconds": round(time.monotonic() - started),
                }
            )
            print(
                f"round {number}: RM held-out accuracy {rm['eval_accuracy']:.3f} "
                f"({rm['eval_pairs']} pairs; on the {strict[1]} pairs the preference orders "
                f"strictly: {strict[0]:.3f}), "
                f"PPO reward {ppo['first_mean_reward']:.2f} -> {ppo['last_mean_reward']:.2f}, "
                f"KL {ppo['final_kl']:.2f}, {time.monotonic() - started:.0f} s",
                flush=True,
            )
            print(
                f"  audit of v{number + 1}: the auditor agrees with the RM on "
                f"{audit['audit_agreement']:.2f} of {audit['audit_pairs']} top answers and "
                f"prefers the new answer on {audit['audit_new_preferred']:.2f}; audited answers "
                f"{audit['audit_new_chars']:.0f} chars (the old {audit['audit_old_chars']:.0f})",
                flush=True,
            )
        greedy = SamplingConfig(k=1, temperature=0.0, max_new_tokens=args.max_new_tokens)
        answers = [generate_completions(v, held_out, greedy) for v in versions]
        kls = kl_to_first(versions, held_out, answers)
    first, last = answers[0], answers[-1]
    wins = win_rate(prefer, held_out, last, first)
    print(
        f"win rate of v{len(versions)} over v1 by '{args.preference}' on {len(held_out)} "
        f"held-out prompts: {wins:.2f}"
    )
    per_version = []
    for i, (a, kl) in enumerate(zip(answers, kls, strict=True), start=1):
        texts = [x[0]["text"] for x in a]
        row = {
            "version": i,
            "mean_chars": sum(map(len, texts)) / len(texts),
            "distinct_2": distinct_2(texts),
            "kl_to_v1": kl,
            "mean_preference": sum(map(prefer, held_out, texts)) / len(texts),
        }
        per_version.append(row)
        print(
            f"v{i}: mean length {row['mean_chars']:.0f} chars, distinct-2 "
            f"{row['distinct_2']:.2f}, KL to v1 {kl:.2f} nats, mean preference "
            f"{row['mean_preference']:.3f}"
        )
    if args.json:
        result = {"args": vars(args), "rounds": rounds, "win_rate": wins, "versions": per_version}
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
