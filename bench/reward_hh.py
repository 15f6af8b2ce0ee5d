"""A reward model on real human preferences: the shipped HH-RLHF sample, SmolLM2 as the backbone.

The pairs go through the project's own import and export: `import_pairs` stores the file as a
round of comparisons (in a throwaway SQLite database) and `comparisons_as_trl_jsonl` exports them,
as an admin would. Each dialogue becomes its turns (format.dialogue_turns) behind the system
prompt, as the worker reads it. The split is by conversation (a hash of the prompt): a held-out
part is scored, a reward model is trained on --train-pairs of the rest (K-wise loss with K=2,
prompts truncated from the left), for --seeds seeds (each its own training pairs, order and
score head). Accuracy: the share of held-out pairs whose chosen reply scores higher; the baseline
is "the shorter reply is chosen".

    .venv/bin/python bench/reward_hh.py [--model artifacts/smollm2-135m-instruct]
        [--train-pairs 400] [--seeds 3] [--top-layers 8] [--threads 2]
"""

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from statistics import mean, stdev

import torch

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT / "labelapp" / "data" / "hh_rlhf_harmless_sample.jsonl"


def exported_pairs(database: Path) -> list[dict]:
    """The HH sample imported with import_pairs and exported as TRL rows, in a fresh database."""
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelapp.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from labelapp.services.exports import comparisons_as_trl_jsonl
    from labelapp.services.imports import import_pairs

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create(username="bench")
    result = import_pairs(HH.name, HH.read_bytes(), user=user, source="hh-rlhf")
    return [json.loads(line) for line in comparisons_as_trl_jsonl(result.round)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="artifacts/smollm2-135m-instruct")
    parser.add_argument("--train-pairs", type=int, default=400)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--top-layers", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from rlhf_worker.training.artifacts import load_reward_model, load_tokenizer
    from rlhf_worker.training.format import as_messages, dialogue_turns
    from rlhf_worker.training.reward import (
        RankedExample,
        RewardConfig,
        is_held_out,
        score_completions,
        train_reward_model,
    )

    with tempfile.TemporaryDirectory() as tmp:
        pairs = exported_pairs(Path(tmp) / "hh.sqlite3")
        test = [p for p in pairs if is_held_out(p["prompt"], args.test_fraction)]
        pool = [p for p in pairs if not is_held_out(p["prompt"], args.test_fraction)]
        shorter = mean(len(p["chosen"]) < len(p["rejected"]) for p in test)
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{args.threads} torch threads; model {args.model}; {len(pairs)} pairs exported, "
            f"{len(test)} held out by conversation, {len(pool)} to train from; shorter-reply "
            f"baseline on the held-out pairs {shorter:.3f}",
            flush=True,
        )
        accuracies = []
        for seed in range(args.seeds):
            started = time.monotonic()
            train = random.Random(seed).sample(pool, min(args.train_pairs, len(pool)))
            examples = [
                RankedExample(
                    as_messages(dialogue_turns(p["prompt"])), [p["chosen"], p["rejected"]]
                )
                for p in train
            ]
            config = RewardConfig(
                epochs=args.epochs,
                batch_size=8,
                learning_rate=args.learning_rate,
                max_length=args.max_length,
                eval_fraction=0.0,
                top_layers=args.top_layers,
                seed=seed,
            )
            out = Path(tmp) / f"rm-{seed}"
            metrics = train_reward_model(args.model, examples, out, config)
            model, tokenizer = load_reward_model(out), load_tokenizer(out)
            prompts = [as_messages(dialogue_turns(p["prompt"])) for p in test]
            kwargs = {"batch_size": 16, "max_length": args.max_length}
            chosen = score_completions(
                model, tokenizer, prompts, [p["chosen"] for p in test], **kwargs
            )
            rejected = score_completions(
                model, tokenizer, prompts, [p["rejected"] for p in test], **kwargs
            )
            accuracy = (chosen > rejected).float().mean().item()
            accuracies.append(accuracy)
            print(
                f"seed {seed}: {len(train)} pairs, {args.epochs} epoch(s), train loss "
                f"{metrics['train_loss_first']:.3f} -> {metrics['train_loss_last']:.3f}; "
                f"held-out accuracy {accuracy:.3f} ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    spread = stdev(accuracies) if len(accuracies) > 1 else 0.0
    print(
        f"held-out accuracy over {len(accuracies)} seeds: {mean(accuracies):.3f} +- {spread:.3f} "
        f"(std); shorter-reply baseline {shorter:.3f}"
    )


if __name__ == "__main__":
    main()
