"""Agreement between labelers who ranked the same prompt (overlap > 1).

A ranking is a list best first whose items are completion ids or, for answers ranked equally
good, lists of them (tie groups; services.ranking.groups_of makes them). Two rankings of a
prompt agree on a completion pair when they order its two completions the same way: both the
same direction, or both tied, counts 1; one tied and the other not counts a half; opposite
directions count 0.
"""

from collections import defaultdict
from itertools import combinations

from labelapp.models import LabelingRound, Ranking
from labelapp.services.ranking import groups_of

Ranked = list  # [cid | [cid, ...], ...], best first


def _levels(ranking: Ranked) -> dict[int, int]:
    """{completion id: its group's place, 0 for the best}."""
    return {
        cid: place
        for place, item in enumerate(ranking)
        for cid in (item if isinstance(item, list) else [item])
    }


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def _agreement(first: int, second: int) -> float:
    """Two judgements of one pair (+1 first better, -1 second better, 0 tied): 1, ½ or 0."""
    if first == second:
        return 1.0
    return 0.5 if first == 0 or second == 0 else 0.0


def pairwise_agreement(rankings: list[Ranked]) -> tuple[float, int]:
    """(agreeing, total) completion-pair judgements over every two rankings of one prompt; a
    tie against a direction agrees by half."""
    agree, total = 0.0, 0
    for first, second in combinations([_levels(r) for r in rankings], 2):
        for a, b in combinations(sorted(first, key=first.get), 2):
            if a in second and b in second:
                total += 1
                agree += _agreement(_sign(first[b] - first[a]), _sign(second[b] - second[a]))
    return agree, total


def kendall_tau(first: Ranked, second: Ranked) -> float:
    """Kendall's τ of two rankings over the items both rank: 1 identical, −1 reversed.

    τ = (concordant − discordant) / pairs = 2·agree/pairs − 1, a tie against a direction being
    half of each (not τ-b: its correction for ties is not applied).
    Raises ValueError when they share fewer than two items.
    """
    agree, total = pairwise_agreement([first, second])
    if not total:
        raise ValueError("Kendall's tau needs two rankings that share at least two items")
    return (2 * agree - total) / total


def majority_agreement(own: Ranked, others: list[Ranked]) -> tuple[float, int]:
    """(matching, counted) pair judgements of `own` against the majority of `others`.

    For every completion pair `own` ranks, the others that rank both vote on its direction (a
    tie votes for neither); a pair the votes tie on (or none of them ranks) is not counted. A
    tie of `own` against the majority's direction matches by half.
    """
    mine = _levels(own)
    levels = [_levels(order) for order in others]
    matching, counted = 0.0, 0
    for a, b in combinations(sorted(mine, key=mine.get), 2):
        votes = sum(_sign(lv[b] - lv[a]) for lv in levels if a in lv and b in lv)
        if votes:
            counted += 1
            matching += _agreement(_sign(mine[b] - mine[a]), _sign(votes))
    return matching, counted


def agreement_summary(round_: LabelingRound) -> dict:
    """Inter-labeler agreement of a round, from one query (hidden repeats left out).

    {"prompts": overlapped prompts (ranked by 2+ labelers), "pairs": pair judgements compared,
    "agreement": share of them two labelers agree on, "kendall_tau": mean τ over every two
    rankings of the same prompt}; the last two are None without overlapped prompts.
    """
    by_prompt: dict[int, list[Ranked]] = defaultdict(list)
    rows = Ranking.objects.filter(
        assignment__round=round_, all_bad=False, assignment__repeat_of=None
    ).values_list("assignment__prompt_id", "order", "tied")
    for prompt_id, order, tied in rows:
        by_prompt[prompt_id].append(groups_of(order, tied))
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
