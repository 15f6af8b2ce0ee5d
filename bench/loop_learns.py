"""Does the loop learn? Simulated labelers with a hidden preference, several rounds, win rate.

Each round: the current policy samples K=4 answers for the round's prompts, a simulated labeler
ranks them by the hidden preference, a reward model is trained on all rankings so far (K-wise),
and PPO improves the policy against it. At the end every version answers held-out prompts (one
sample each, temperature 1); the win rate of the last version over v1 is judged by the same
preference (ties count half), and each version's KL to v1 is estimated on its own answers.
The ML is the worker's own (rlhf_worker.training); the web/worker plumbing is left out.

    .venv/bin/python bench/loop_learns.py --base artifacts/base-model [--rounds 3] [--prompts 64]
"""

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from labelapp.services.simulation import preference
from rlhf_worker.training.artifacts import load_causal_lm, load_tokenizer
from rlhf_worker.training.format import format_prompt
from rlhf_worker.training.generate import GenerationConfig, generate_completions
from rlhf_worker.training.ppo import PPOConfig, train_ppo
from rlhf_worker.training.reward import RewardConfig, train_reward_model

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
        context = tokenizer(format_prompt(prompt), add_special_tokens=False)["input_ids"]
        reply = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([context + reply], device=model.device)
        logits = model(ids).logits[0, len(context) - 1 : -1].float()
        target = ids[0, len(context) :]
        totals.append(logits.log_softmax(-1).gather(-1, target[:, None]).sum().item())
    return totals


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
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--preference", default="shorter")
    parser.add_argument("--ppo-steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prefer = preference(args.preference)
    rng = random.Random(0)
    pool = prompts_pool()
    rng.shuffle(pool)
    held_out, train_pool = pool[: args.prompts], pool[args.prompts :]
    sampling = GenerationConfig(k=4, max_new_tokens=48)
    versions = [Path(args.base)]
    rankings: list[tuple[str, list[str]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(1, args.rounds + 1):
            started = time.monotonic()
            prompts = train_pool[(number - 1) * args.prompts : number * args.prompts]
            samples = generate_completions(versions[-1], prompts, sampling)
            for prompt, answers in zip(prompts, samples, strict=True):
                texts = [a["text"] for a in answers]
                rankings.append((prompt, sorted(texts, key=lambda t: -prefer(prompt, t))))
            rm = train_reward_model(
                versions[-1], rankings, Path(tmp) / f"rm{number}", RewardConfig(epochs=2)
            )
            ppo = train_ppo(
                versions[-1],
                Path(tmp) / f"rm{number}",
                prompts,
                Path(tmp) / f"v{number + 1}",
                PPOConfig(steps=args.ppo_steps, max_new_tokens=48),
            )
            versions.append(Path(tmp) / f"v{number + 1}")
            print(
                f"round {number}: RM held-out accuracy {rm['eval_accuracy']}, "
                f"PPO reward {ppo['first_mean_reward']:.2f} -> {ppo['last_mean_reward']:.2f}, "
                f"KL {ppo['final_kl']:.2f}, {time.monotonic() - started:.0f} s",
                flush=True,
            )
        greedy = GenerationConfig(k=1, max_new_tokens=48, seed=1)
        answers = [generate_completions(v, held_out, greedy) for v in versions]
        kls = kl_to_first(versions, held_out, answers)
    first, last = answers[0], answers[-1]
    print(
        f"win rate of v{len(versions)} over v1 by '{args.preference}' on {len(held_out)} "
        f"held-out prompts: {win_rate(prefer, held_out, last, first):.2f}"
    )
    for i, (a, kl) in enumerate(zip(answers, kls, strict=True), start=1):
        texts = [x[0]["text"] for x in a]
        print(
            f"v{i}: mean length {sum(map(len, texts)) / len(texts):.0f} chars, "
            f"distinct-2 {distinct_2(texts):.2f}, KL to v1 {kl:.2f} nats"
        )


if __name__ == "__main__":
    main()
