"""Two policies side by side: their greedy answers to the same prompts, scored by a reward model."""

from pathlib import Path

from rlhf_worker.training.format import Prompt, prompt_key
from rlhf_worker.training.generate import SamplingConfig, generate_completions
from rlhf_worker.training.reward import score_with


def compare_policies(
    first_dir: str | Path,
    second_dir: str | Path,
    prompts: list[Prompt],
    reward_dir: str | Path | None = None,
    max_new_tokens: int = 64,
) -> dict:
    """Each policy's greedy answer per prompt and, with a reward model, both scores.

    Returns {"samples": [{"prompt", "first", "second", "first_score"?, "second_score"?}],
    "mean_scores": [first, second] or None, "win_rate": share of prompts where the second
    scores higher (ties count half) or None}.
    """
    config = SamplingConfig(k=1, temperature=0.0, max_new_tokens=max_new_tokens)
    first = [out[0]["text"] for out in generate_completions(first_dir, prompts, config)]
    second = [out[0]["text"] for out in generate_completions(second_dir, prompts, config)]
    samples = [
        {"prompt": prompt_key(p), "first": a, "second": b}
        for p, a, b in zip(prompts, first, second, strict=True)
    ]
    result = {"samples": samples, "mean_scores": None, "win_rate": None}
    if reward_dir is None or not prompts:
        return result
    scores = score_with(reward_dir, prompts + prompts, first + second)
    first_scores, second_scores = scores[: len(prompts)], scores[len(prompts) :]
    for sample, a, b in zip(samples, first_scores, second_scores, strict=True):
        sample["first_score"], sample["second_score"] = a, b
    wins = sum(
        1.0 if b > a else 0.5 if b == a else 0.0
        for a, b in zip(first_scores, second_scores, strict=True)
    )
    result["mean_scores"] = [sum(first_scores) / len(prompts), sum(second_scores) / len(prompts)]
    result["win_rate"] = wins / len(prompts)
    return result
