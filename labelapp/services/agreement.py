"""Agreement between labelers who ranked the same prompt (overlap > 1)."""

from collections import defaultdict
from itertools import combinations

from labelapp.models import LabelingRound, Ranking


def pairwise_agreement(orders: list[list[int]]) -> tuple[int, int]:
    """(agreeing, total) completion-pair judgements over every pair of rankings of one prompt."""
    agree = total = 0
    for first, second in combinations(orders, 2):
        position = {cid: i for i, cid in enumerate(second)}
        for better, worse in combinations(first, 2):
            if better in position and worse in position:
                total += 1
                agree += position[better] < position[worse]
    return agree, total


def round_agreement(round_: LabelingRound) -> float | None:
    """Share of pairwise judgements two labelers agree on; None without overlapped prompts."""
    by_prompt: dict[int, list[list[int]]] = defaultdict(list)
    rows = Ranking.objects.filter(assignment__round=round_).values_list(
        "assignment__prompt_id", "order"
    )
    for prompt_id, order in rows:
        by_prompt[prompt_id].append(order)
    agree = total = 0
    for orders in by_prompt.values():
        a, t = pairwise_agreement(orders)
        agree += a
        total += t
    return agree / total if total else None
