"""Which labels count most: uncertainty-first prompts, and the answers an audit checks.

Pure functions over reward-model scores (no database, no torch), so each choice can be tested on
a hand-made case. The chain (labelapp.services.training) calls them when a scored round's
answers come back from the worker.

- Uncertain rounds keep the prompts whose K answers the reward model separates least: the
  smallest mean gap |r_i - r_j| over the answers' pairs. A ranking of answers the model already
  tells apart teaches it little; one of answers it scores alike is where it can be wrong.
  Answers that are the same text cannot be told apart by anyone, so such prompts go last.
- An audit checks a new version's answers that its reward model likes most, and those it likes
  far more than their length and repetition predict (the usual ways a policy games a reward
  model), each against its parent's answer to the same prompt.
"""

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations


def mean_gap(rewards: Sequence[float]) -> float:
    """The mean |r_i - r_j| over the pairs of one prompt's answers (0 for fewer than two)."""
    pairs = list(combinations(rewards, 2))
    return sum(abs(a - b) for a, b in pairs) / len(pairs) if pairs else 0.0


def least_separated(answers: dict[int, list[tuple[str, float]]], n: int) -> list[tuple[int, float]]:
    """The `n` prompts (id, gap) whose answers (text, reward) the reward model separates least,
    least first; prompts with repeated answer texts come after all others."""
    ranked = sorted(
        answers.items(),
        key=lambda item: (
            len({text for text, _ in item[1]}) < len(item[1]),
            mean_gap([reward for _, reward in item[1]]),
            item[0],
        ),
    )
    return [(pid, mean_gap([r for _, r in scored])) for pid, scored in ranked[:n]]


def repetition(text: str) -> float:
    """The share of an answer's word trigrams that repeat an earlier one (0 for no repeats)."""
    words = re.findall(r"\w+", text.lower())
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    return 1 - len(set(trigrams)) / len(trigrams) if trigrams else 0.0


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting; a singular column gets weight 0."""
    n = len(vector)
    a = [row[:] + [v] for row, v in zip(matrix, vector, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        if abs(a[col][col]) < 1e-12:
            continue
        for r in range(n):
            if r != col:
                factor = a[r][col] / a[col][col]
                a[r] = [x - factor * y for x, y in zip(a[r], a[col], strict=True)]
    return [a[i][n] / a[i][i] if abs(a[i][i]) >= 1e-12 else 0.0 for i in range(n)]


def excess_rewards(texts: Sequence[str], rewards: Sequence[float]) -> list[float]:
    """Each answer's reward minus what a least-squares fit on its length (characters) and
    repetition predicts from all the answers given: how much more the reward model likes it
    than those two alone explain."""
    features = [[1.0, float(len(t)), repetition(t)] for t in texts]
    gram = [[sum(f[i] * f[j] for f in features) for j in range(3)] for i in range(3)]
    moment = [sum(f[i] * r for f, r in zip(features, rewards, strict=True)) for i in range(3)]
    weights = _solve(gram, moment)
    return [
        r - sum(w * x for w, x in zip(weights, f, strict=True))
        for f, r in zip(features, rewards, strict=True)
    ]


@dataclass(frozen=True)
class Answer:
    id: int
    prompt_id: int
    text: str
    reward: float


@dataclass(frozen=True)
class AuditPair:
    """A new answer the audit checks, the parent's answer it is ranked against, and why."""

    new: Answer
    old: Answer
    reason: str  # "top reward" or "reward beyond length and repetition"


def audit_pairs(new: Sequence[Answer], old: Sequence[Answer], n: int) -> list[AuditPair]:
    """Up to `n` pairs, one per prompt: half the new answers with the highest rewards, then those
    with the highest excess reward (excess_rewards), each against one of the parent's answers to
    the same prompt (chosen at random, seeded by the prompt). Prompts the parent did not
    answer are left out."""
    parents: dict[int, list[Answer]] = {}
    for answer in sorted(old, key=lambda a: a.id):
        parents.setdefault(answer.prompt_id, []).append(answer)
    candidates = [a for a in new if a.prompt_id in parents]
    excess = dict(
        zip(
            (a.id for a in candidates),
            excess_rewards([a.text for a in candidates], [a.reward for a in candidates]),
            strict=True,
        )
    )
    by_reward = sorted(candidates, key=lambda a: (-a.reward, a.id))
    by_excess = sorted(candidates, key=lambda a: (-excess[a.id], a.id))
    picked: list[tuple[Answer, str]] = []
    prompts: set[int] = set()
    for ranked, reason, quota in (
        (by_reward, "top reward", (n + 1) // 2),
        (by_excess, "reward beyond length and repetition", n),
    ):
        for answer in ranked:
            if len(picked) >= quota:
                break
            if answer.prompt_id not in prompts:
                prompts.add(answer.prompt_id)
                picked.append((answer, reason))
    return [
        AuditPair(a, random.Random(a.prompt_id).choice(parents[a.prompt_id]), reason)  # noqa: S311
        for a, reason in picked
    ]


def agreement_with_rewards(rankings: Sequence[tuple[int, int]], rewards: dict[int, float]) -> float:
    """The share of (preferred, other) completion-id judgements where the reward model scored
    the preferred one higher; a reward tie counts half."""
    if not rankings:
        raise ValueError("no judgements")
    score = sum(
        1.0 if rewards[a] > rewards[b] else 0.5 if rewards[a] == rewards[b] else 0.0
        for a, b in rankings
    )
    return score / len(rankings)
