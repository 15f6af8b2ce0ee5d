"""Labeling quality for the admins' console: per-labeler stats, position bias, flagged answers,
and what audits said of each policy version.

Every function reads a fixed handful of queries, however many labelers or rankings a round has.
"""

from collections import Counter, defaultdict
from statistics import median

from django.conf import settings
from django.db.models import Count, Q
from django.utils.text import Truncator

from labelapp.models import LABELS, Assignment, Completion, LabelingRound, Ranking
from labelapp.services.agreement import agreement_summary, majority_agreement, pairwise_agreement
from labelapp.services.ranking import groups_of
from labelapp.services.selection import agreement_with_rewards
from labelapp.services.trust import trust_score

PROMPT_PREVIEW_CHARS = 120
FLAGGED_LIMIT = 100


def _majority_by_labeler(rows: list[tuple[int, int, int, list]]) -> dict[int, list[float]]:
    """{labeler id: [matching, counted]} over every prompt of a round ranked by 2+ labelers.

    `rows` are (labeler id, round id, prompt id, ranking as groups); see majority_agreement for
    the rule.
    """
    by_prompt: dict[tuple[int, int], list[tuple[int, list]]] = defaultdict(list)
    for labeler_id, round_id, prompt_id, groups in rows:
        by_prompt[round_id, prompt_id].append((labeler_id, groups))
    totals: dict[int, list[float]] = defaultdict(lambda: [0, 0])
    for rankings in by_prompt.values():
        if len(rankings) < 2:
            continue
        for i, (labeler_id, own) in enumerate(rankings):
            others = [groups for j, (_, groups) in enumerate(rankings) if j != i]
            matching, counted = majority_agreement(own, others)
            totals[labeler_id][0] += matching
            totals[labeler_id][1] += counted
    return totals


_NO_REPEATS = {"repeats": 0, "agree": 0.0, "pairs": 0, "same_first": 0, "one_best": 0}


def _self_consistency(repeats: list[tuple[int, tuple, tuple]]) -> dict[int, dict]:
    """{labeler id: {"repeats", "agree", "pairs", "same_first", "one_best"}} over hidden repeats.

    `repeats` are (labeler id, original, repeat), each (groups, labels pressed) of a ranking
    that is not all bad. agree/pairs: pair judgements the two rankings agree on (a tie against
    a direction half). same_first/one_best: of the repeats where both have one best answer,
    those whose best sat under the same letter both times; the answers were reshown so that
    none kept its letter, so that is a different answer picked for its position.
    """
    totals: dict[int, dict] = defaultdict(lambda: dict(_NO_REPEATS))
    for labeler_id, (first, first_labels), (second, second_labels) in repeats:
        agree, pairs = pairwise_agreement([first, second])
        row = totals[labeler_id]
        row["repeats"] += 1
        row["agree"] += agree
        row["pairs"] += pairs
        if len(first[0]) == 1 and len(second[0]) == 1:
            row["one_best"] += 1
            row["same_first"] += first_labels[0] == second_labels[0]
    return totals


def _gold_agreement(rankings: list[tuple[int, int, int, list]]) -> dict[int, list[float]]:
    """{labeler id: [agreeing, pairs]} of their rankings against gold rankings of the same
    prompt, the answers matched by text (a gold pair may be shown again in a later round).

    `rankings` are (ranking id, labeler id, prompt id, groups of completion ids) of rankings
    that are not all bad or repeats. A labeler is not measured against gold rankings of their
    own. Two queries.
    """
    gold = list(
        Ranking.objects.filter(gold=True, all_bad=False).values_list(
            "id", "labeler_id", "assignment__prompt_id", "order", "tied"
        )
    )
    gold_prompts = {prompt_id for _, _, prompt_id, _, _ in gold}
    measured = [r for r in rankings if r[2] in gold_prompts]
    if not measured:
        return {}
    ids = {cid for *_, order, _ in gold for cid in order}
    ids |= {cid for *_, groups in measured for group in groups for cid in group}
    texts = dict(Completion.objects.filter(pk__in=ids).values_list("id", "text"))

    def by_text(groups: list[list[int]]) -> list[list[str]]:
        return [[texts[cid] for cid in group] for group in groups]

    gold_of: dict[int, list[tuple[int, int, list]]] = defaultdict(list)
    for pk, labeler_id, prompt_id, order, tied in gold:
        gold_of[prompt_id].append((pk, labeler_id, by_text(groups_of(order, tied))))
    totals: dict[int, list[float]] = defaultdict(lambda: [0.0, 0])
    for pk, labeler_id, prompt_id, groups in measured:
        own = by_text(groups)
        for gold_pk, gold_labeler, reference in gold_of[prompt_id]:
            if gold_pk != pk and gold_labeler != labeler_id:
                agree, pairs = pairwise_agreement([own, reference])
                totals[labeler_id][0] += agree
                totals[labeler_id][1] += pairs
    return totals


def labeler_stats(round_: LabelingRound | None = None) -> list[dict]:
    """One row per labeler who submitted or skipped work in the round (all rounds if None).

    Rows, by username: {"labeler_id", "username", "done" (submitted rankings), "skipped",
    "total" (done + skipped), "skip_rate" (skipped / total), "median_time_ms" (of rankings with a
    time, else None), "majority_agreement" (share of their pair judgements that match the
    majority of the other labelers of the same prompt, ties left out; None without overlap),
    "majority_pairs" (the judgements that share is over), "flags_given" (flag names they set),
    "with_ties" (rankings with a tie), "all_bad" (submissions that rejected every answer),
    "gold_agreement" (share of their pair judgements on gold prompts that match the gold
    ranking; None without), "gold_pairs", "repeats" (hidden repeats ranked), "self_agreement"
    (share of pair judgements a repeat agrees with its original on; None without),
    "self_pairs", "same_letter_first" (of repeats with one best answer both times, the share
    whose best was under the same letter, i.e. a different answer; None without), "trust"
    (services/trust.py, from the three checks' pairs pooled) and "trust_pairs" (those pairs)}.
    Hidden repeats count as work done but not as judgements against others. At most four queries.
    """
    assignments = Assignment.objects.filter(
        state__in=[Assignment.State.SUBMITTED, Assignment.State.SKIPPED]
    )
    rankings = Ranking.objects.all()
    if round_ is not None:
        assignments = assignments.filter(round=round_)
        rankings = rankings.filter(assignment__round=round_)
    counts = (
        assignments.values("labeler_id", "labeler__username")
        .annotate(
            done=Count("id", filter=Q(state=Assignment.State.SUBMITTED)),
            skipped=Count("id", filter=Q(state=Assignment.State.SKIPPED)),
        )
        .order_by("labeler__username")
    )
    rows = list(
        rankings.values_list(
            "id",
            "labeler_id",
            "assignment_id",
            "assignment__repeat_of_id",
            "assignment__round_id",
            "assignment__prompt_id",
            "order",
            "tied",
            "labels",
            "all_bad",
            "flags",
            "time_spent_ms",
        )
    )
    times: dict[int, list[int]] = defaultdict(list)
    flags_given: Counter[int] = Counter()
    ties: Counter[int] = Counter()
    all_bad: Counter[int] = Counter()
    ranked, judged, repeated = [], {}, []
    for pk, labeler_id, assignment_id, repeat_of, round_id, prompt_id, *rest in rows:
        order, tied, labels, bad, flags, spent = rest
        if spent is not None:
            times[labeler_id].append(spent)
        flags_given[labeler_id] += sum(len(names) for names in flags.values())
        ties[labeler_id] += bool(tied)
        all_bad[labeler_id] += bad
        if bad:
            continue
        judged[assignment_id] = (groups_of(order, tied), labels)
        if repeat_of is None:
            ranked.append((pk, labeler_id, round_id, prompt_id, judged[assignment_id]))
        else:
            repeated.append((labeler_id, repeat_of, judged[assignment_id]))
    majority = _majority_by_labeler([(lid, rid, pid, j[0]) for _, lid, rid, pid, j in ranked])
    gold = _gold_agreement([(pk, lid, pid, j[0]) for pk, lid, _, pid, j in ranked])
    own = _self_consistency(
        [(lid, judged[first], again) for lid, first, again in repeated if first in judged]
    )

    stats = []
    for row in counts:
        labeler_id = row["labeler_id"]
        total = row["done"] + row["skipped"]
        matching, counted = majority.get(labeler_id, (0, 0))
        gold_agree, gold_pairs = gold.get(labeler_id, (0, 0))
        repeats = own.get(labeler_id, _NO_REPEATS)
        agreeing = matching + gold_agree + repeats["agree"]
        pairs = counted + gold_pairs + repeats["pairs"]
        stats.append(
            {
                "labeler_id": labeler_id,
                "username": row["labeler__username"],
                "done": row["done"],
                "skipped": row["skipped"],
                "total": total,
                "skip_rate": row["skipped"] / total,
                "median_time_ms": float(median(times[labeler_id])) if times[labeler_id] else None,
                "majority_agreement": matching / counted if counted else None,
                "majority_pairs": counted,
                "flags_given": flags_given[labeler_id],
                "with_ties": ties[labeler_id],
                "all_bad": all_bad[labeler_id],
                "gold_agreement": gold_agree / gold_pairs if gold_pairs else None,
                "gold_pairs": gold_pairs,
                "repeats": repeats["repeats"],
                "self_agreement": repeats["agree"] / repeats["pairs"] if repeats["pairs"] else None,
                "self_pairs": repeats["pairs"],
                "same_letter_first": (
                    repeats["same_first"] / repeats["one_best"] if repeats["one_best"] else None
                ),
                "trust": trust_score(agreeing, pairs),
                "trust_pairs": pairs,
            }
        )
    return stats


def trust_by_labeler() -> dict[int, float]:
    """{labeler id: trust} over every round, for labelers with any evidence (others: 1.0)."""
    return {row["labeler_id"]: row["trust"] for row in labeler_stats() if row["trust_pairs"]}


def position_bias(round_: LabelingRound) -> dict:
    """How often each shown position (A, B, ...) was ranked first, over the round's rankings.

    Positions are shuffled per assignment, so with no bias each gets about 1/K of the firsts.
    Over the rankings with one best answer (not all bad, no tie at the top).
    {"rankings": n, "counts": {"A": n, ...}, "shares": {"A": share, ...} (0.0 with no rankings),
    "max_over_expected": the largest share × K (1.0 uniform, K always the same position; None
    with no rankings)}. One query.
    """
    counts = dict.fromkeys(LABELS[: round_.k], 0)
    rows = Ranking.objects.filter(assignment__round=round_, all_bad=False).values_list(
        "labels", "order", "tied"
    )
    for labels, order, tied in rows:
        if labels and not any(order[0] in group for group in tied):  # one answer ranked best
            counts[labels[0]] = counts.get(labels[0], 0) + 1
    n = sum(counts.values())
    shares = {label: count / n if n else 0.0 for label, count in counts.items()}
    return {
        "rankings": n,
        "counts": counts,
        "shares": shares,
        "max_over_expected": max(shares.values()) * len(shares) if n else None,
    }


def flagged_completions(round_: LabelingRound, limit: int = FLAGGED_LIMIT) -> list[dict]:
    """The round's flagged completions to review, most labelers first, then most flags.

    Items: {"completion_id", "prompt_id", "prompt" (truncated), "completion", "flags" ({flag:
    how many labelers set it}, most set first), "flag_count", "labelers" (usernames, sorted)}.
    At most `limit` items; two queries.
    """
    rows = (
        Ranking.objects.filter(assignment__round=round_)
        .exclude(flags={})
        .values_list("flags", "labeler__username")
    )
    flags_of: dict[int, Counter[str]] = defaultdict(Counter)
    labelers_of: dict[int, set[str]] = defaultdict(set)
    for flags, username in rows:
        for completion_id, names in flags.items():  # JSON keys are strings
            if names:
                flags_of[int(completion_id)].update(names)
                labelers_of[int(completion_id)].add(username)
    ids = sorted(flags_of, key=lambda cid: (-len(labelers_of[cid]), -flags_of[cid].total(), cid))[
        :limit
    ]
    completions = Completion.objects.select_related("prompt").in_bulk(ids)
    return [
        {
            "completion_id": cid,
            "prompt_id": completions[cid].prompt_id,
            "prompt": Truncator(completions[cid].prompt.text).chars(PROMPT_PREVIEW_CHARS),
            "completion": completions[cid].text,
            "flags": dict(sorted(flags_of[cid].items(), key=lambda item: (-item[1], item[0]))),
            "flag_count": flags_of[cid].total(),
            "labelers": sorted(labelers_of[cid]),
        }
        for cid in ids
        if cid in completions
    ]


def round_quality(round_: LabelingRound) -> dict:
    """Everything the console's quality page shows for a round, in at most eight queries.

    {"agreement": agreement_summary, "labelers": labeler_stats, "position_bias": position_bias,
    "flagged": flagged_completions}, each as those functions return it.
    """
    return {
        "agreement": agreement_summary(round_),
        "labelers": labeler_stats(round_),
        "position_bias": position_bias(round_),
        "flagged": flagged_completions(round_),
    }


def audit_results(versions: list) -> dict[int, dict]:
    """Per policy version (id) that has an audit round: what humans said of the answers its
    reward model liked most.

    `agreement` is the share of audit rankings (hidden repeats left out) where the answer humans
    preferred is the one the reward model scored higher (its precision on its own top answers; a
    reward tie counts half), `new_preferred` the share where they preferred the new version's
    answer; `rm_accuracy` is the reward model's own held-out accuracy, for comparison. `flagged`
    when the agreement is below AUDIT_MIN_AGREEMENT. Three queries, however many versions.
    """
    rounds = {
        r.audit_of_id: r
        for r in LabelingRound.objects.filter(audit_of__in=versions).select_related(
            "scored_by", "audit_of"
        )
    }
    rankings = defaultdict(list)
    for round_id, order in Ranking.objects.filter(
        assignment__round__in=rounds.values(), all_bad=False, assignment__repeat_of=None
    ).values_list("assignment__round", "order"):
        rankings[round_id].append(order)
    completions = {
        c.pk: c
        for c in Completion.objects.filter(round__in=rounds.values()).only(
            "id", "reward", "policy_version_id"
        )
    }
    rewards = {pk: c.reward for pk, c in completions.items()}
    results = {}
    for version_id, round_ in rounds.items():
        judged = [(order[0], order[1]) for order in rankings[round_.pk]]
        agreement = agreement_with_rewards(judged, rewards) if judged else None
        new_preferred = (
            sum(completions[a].policy_version_id == version_id for a, _ in judged) / len(judged)
            if judged
            else None
        )
        rm = round_.scored_by
        results[version_id] = {
            "round": round_,
            "pairs": len(round_.config.get("audit", [])),
            "ranked": len(judged),
            "agreement": agreement,
            "new_preferred": new_preferred,
            "rm_accuracy": rm.metrics.get("eval_accuracy") if rm else None,
            "threshold": settings.AUDIT_MIN_AGREEMENT,
            "flagged": agreement is not None and agreement < settings.AUDIT_MIN_AGREEMENT,
        }
    return results
