"""Agreement between labelers who ranked the same prompt (overlap > 1).

A ranking is a list of completion ids, best first. Two rankings of a prompt agree on a
completion pair when they put its two completions in the same order.
"""

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


def kendall_tau(first: list[int], second: list[int]) -> float:
    """Kendall's τ of two rankings over the items both rank: 1 identical, −1 reversed.

    Rankings have no ties, so τ = (concordant − discordant) / pairs = 2·agree/pairs − 1.
    Raises ValueError when they share fewer than two items.
    """
    agree, total = pairwise_agreement([first, second])
    if not total:
        raise ValueError("Kendall's tau needs two rankings that share at least two items")
    return (2 * agree - total) / total


def majority_agreement(own: list[int], others: list[list[int]]) -> tuple[int, int]:
    """(matching, counted) pair judgements of `own` against the majority of `others`.

    For every completion pair `own` ranks, the others that rank both vote on its direction; a
    pair they tie on (or none of them ranks) is not counted.
    """
    positions = [{cid: i for i, cid in enumerate(order)} for order in others]
    matching = counted = 0
    for better, worse in combinations(own, 2):
        votes = sum(
            1 if pos[better] < pos[worse] else -1
            for pos in positions
            if better in pos and worse in pos
        )
        if votes:
            counted += 1
            matching += votes > 0
    return matching, counted


def agreement_summary(round_: LabelingRound) -> dict:
    """Inter-labeler agreement of a round, from one query.

    {"prompts": overlapped prompts (ranked by 2+ labelers), "pairs": pair judgements compared,
    "agreement": share of them two labelers agree on, "kendall_tau": mean τ over every two
    rankings of the same prompt}; the last two are None without overlapped prompts.
    """
    by_prompt: dict[int, list[list[int]]] = defaultdict(list)
    rows = Ranking.objects.filter(assignment__round=round_).values_list(
        "assignment__prompt_id", "order"
    )
    for prompt_id, order in rows:
        by_prompt[prompt_id].append(order)
    overlapped = agree = total = 0
    taus: list[float] = []
    for orders in by_prompt.values():
        if len(orders) < 2:
            continue
        overlapped += 1
        for first, second in combinations(orders, 2):
            a, t = pairwise_agreement([first, second])
            if t:
                agree += a
                total += t
                taus.append((2 * a - t) / t)
    return {
        "prompts": overlapped,
        "pairs": total,
        "agreement": agree / total if total else None,
        "kendall_tau": sum(taus) / len(taus) if taus else None,
    }


def round_agreement(round_: LabelingRound) -> float | None:
    """Share of pairwise judgements two labelers agree on; None without overlapped prompts."""
    return agreement_summary(round_)["agreement"]
