"""Gold: rankings an admin vouches for, and tasks that measure labelers against them.

An admin marks imported pairs or reviewed rankings as gold (mark_gold). Gold tasks put gold
prompts, with the gold ranking's answers, into a round that is labeling (add_gold_tasks):
labelers rank them as any other task, not told which ones they are, and quality.labeler_stats
compares their rankings with the gold one, the answers matched by text.
"""

import secrets

from django.db import transaction

from labelapp.models import Assignment, Completion, LabelingRound, Ranking
from labelapp.services.errors import Conflict, InvalidInput
from labelapp.services.ranking import groups_of

GOLD_TASKS_MAX = 200  # per request
GOLD_SOURCE = "gold"  # Completion.source of a gold task's answers


def _markable(round_: LabelingRound):
    """The round's rankings that can be gold: they order answers (not all bad, not repeats)."""
    return Ranking.objects.filter(
        assignment__round=round_, all_bad=False, assignment__repeat_of=None
    )


@transaction.atomic
def mark_gold(round_: LabelingRound, ranking_ids: list[int] | None, gold: bool = True) -> int:
    """Mark the round's rankings (all of them for None) gold, or not gold; returns how many.

    Every id must be a ranking of this round that orders answers; otherwise nothing changes.
    """
    rankings = _markable(round_)
    if ranking_ids is not None:
        wanted = set(ranking_ids)
        if not wanted:
            raise InvalidInput("choose at least one ranking")
        found = set(rankings.filter(pk__in=wanted).values_list("pk", flat=True))
        if missing := sorted(wanted - found):
            raise InvalidInput(
                f"not rankings of round {round_.number} that order answers: "
                + ", ".join(map(str, missing[:20]))
            )
        rankings = rankings.filter(pk__in=wanted)
    return rankings.update(gold=gold)


def gold_prompts_available(round_: LabelingRound) -> int:
    """How many gold prompts are not in the round yet (what add_gold_tasks can add)."""
    return (
        Ranking.objects.filter(gold=True, all_bad=False)
        .exclude(assignment__prompt__in=round_.prompts.all())
        .values("assignment__prompt")
        .distinct()
        .count()
    )


@transaction.atomic
def add_gold_tasks(round_: LabelingRound, count: int) -> int:
    """Put up to `count` gold prompts the round does not have into it, each with its gold
    ranking's answers (at most K) and `overlap` slots; returns how many were added.

    Picked at random among the gold prompts not in the round; the slots go after the round's
    others, so labelers meet them as they work through it.
    """
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= GOLD_TASKS_MAX:
        raise InvalidInput(f"the number of gold tasks must be 1 to {GOLD_TASKS_MAX}")
    round_ = LabelingRound.objects.select_for_update().get(pk=round_.pk)
    if round_.state != LabelingRound.State.LABELING:
        raise Conflict(f"round {round_.number} is {round_.state}: gold tasks go into labeling")
    have = set(round_.prompts.values_list("pk", flat=True))
    first_gold: dict[int, list[int]] = {}
    for prompt_id, order in (
        Ranking.objects.filter(gold=True, all_bad=False)
        .exclude(assignment__prompt__in=have)
        .order_by("id")
        .values_list("assignment__prompt_id", "order")
    ):
        first_gold.setdefault(prompt_id, order)
    if not first_gold:
        raise Conflict("no gold ranking of a prompt this round does not have: mark some first")
    chosen = secrets.SystemRandom().sample(sorted(first_gold), min(count, len(first_gold)))
    texts = dict(
        Completion.objects.filter(
            pk__in={cid for p in chosen for cid in first_gold[p]}
        ).values_list("id", "text")
    )
    Completion.objects.bulk_create(
        Completion(prompt_id=p, round=round_, text=texts[cid], source=GOLD_SOURCE)
        for p in chosen
        for cid in first_gold[p][: round_.k]
    )
    round_.prompts.add(*chosen)
    Assignment.objects.bulk_create(
        Assignment(round=round_, prompt_id=p) for p in chosen for _ in range(round_.overlap)
    )
    return len(chosen)


def review_rows(round_: LabelingRound, limit: int = 50) -> list[dict]:
    """The round's latest rankings that can be gold, for an admin to review: {"ranking_id",
    "labeler", "prompt", "answers" (texts best first, tied ones as one inner list), "gold"}.
    Two queries."""
    rows = list(
        _markable(round_)
        .order_by("-id")
        .values_list(
            "id", "labeler__username", "assignment__prompt__text", "order", "tied", "gold"
        )[:limit]
    )
    ids = {cid for *_, order, _, _ in rows for cid in order}
    texts = dict(Completion.objects.filter(pk__in=ids).values_list("id", "text"))
    return [
        {
            "ranking_id": pk,
            "labeler": labeler,
            "prompt": prompt,
            "answers": [[texts[cid] for cid in group] for group in groups_of(order, tied)],
            "gold": gold,
        }
        for pk, labeler, prompt, order, tied, gold in rows
    ]
