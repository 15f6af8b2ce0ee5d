"""Submitting a ranking: validate it, map labels back to completions, store it and its pairs.

A ranking lists labels best -> worst; an element may be a list of labels the labeler ranked
equally good (a tie group), e.g. ["C", ["A", "D"], "B"]. A plain list of labels is a strict
order. Comparisons are only between groups. "All bad" (every answer unacceptable) comes with
no ranking, stores no comparisons, and needs a demonstration.

A small share of submitted rankings (REPEAT_PERCENT) come back to the same labeler later as a
hidden repeat: the same answers in another A-D order. A repeat's ranking is stored but not
expanded into comparisons: it measures the labeler, nothing trains on it.
"""

import hashlib
import json
import secrets
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from labelapp.models import FLAG_NAMES, Assignment, Demonstration, Ranking
from labelapp.services import sql
from labelapp.services.assignment import check_open_for_work, own_assignment_for_update
from labelapp.services.errors import Conflict, InvalidInput

MAX_TIME_SPENT_MS = 24 * 60 * 60 * 1000
QUALITY_RANGE = range(1, 8)  # InstructGPT's overall quality, 1-7

# The SQL of the hot path (labelapp/services/sql.py says why it is not the ORM's).
_INSERT_COMPARISONS = "INSERT INTO labelapp_comparison (ranking_id, chosen_id, rejected_id) VALUES"
_MARK_SUBMITTED = (
    "UPDATE labelapp_assignment SET state = 'submitted', completed_at = %s WHERE id = %s"
)


@dataclass(frozen=True)
class RankingSubmission:
    """What a labeler sends: labels best -> worst, and optional metadata."""

    ranking: list = field(default_factory=list)  # labels or tie groups (lists of labels)
    flags: dict = field(default_factory=dict)  # {label: [flag, ...]}
    quality: int | None = None
    demonstration: str = ""
    time_spent_ms: int | None = None
    client_submission_id: str = ""
    all_bad: bool = False


def groups_of(order: list, tied: list[list]) -> list[list]:
    """An order best -> worst as its groups: each tie group where its first member is, every
    other item alone. groups_of([3, 1, 4, 2], [[1, 4]]) == [[3], [1, 4], [2]]."""
    group = {item: g for g in tied for item in g}
    groups: list[list] = []
    for item in order:
        if item not in group:
            groups.append([item])
        elif item == group[item][0]:
            groups.append(list(group[item]))
    return groups


def expand_to_comparisons(order: list[int], tied: list[list[int]] = ()) -> list[tuple[int, int]]:
    """The (chosen, rejected) pairs implied by an order best -> worst: all C(K,2) of a strict
    order; with tie groups, only the pairs of items in different groups."""
    groups = groups_of(order, list(tied))
    return [
        (better, worse)
        for i, upper in enumerate(groups)
        for lower in groups[i + 1 :]
        for better in upper
        for worse in lower
    ]


def _canonical_ranking(ranking: object, labels: list[str]) -> list:
    """The ranking with every tie group as a sorted list and single labels as strings (so that
    the same decision always hashes the same), or InvalidInput naming the first problem."""
    shown = ", ".join(labels)
    if not isinstance(ranking, list) or not all(
        isinstance(x, str) or (isinstance(x, list) and all(isinstance(y, str) for y in x))
        for x in ranking
    ):
        raise InvalidInput(
            f"ranking must be a list of labels ({shown}) best first, a tie as a list of labels"
        )
    if any(x == [] for x in ranking):
        raise InvalidInput("a tie group in the ranking is empty")
    flat = [y for x in ranking for y in ([x] if isinstance(x, str) else x)]
    unknown = [x for x in flat if x not in labels]
    if unknown:
        raise InvalidInput(f"unknown label {unknown[0]!r}: this task shows {shown}")
    repeated = sorted({x for x in flat if flat.count(x) > 1})
    if repeated:
        raise InvalidInput(f"label {repeated[0]} appears more than once in the ranking")
    missing = [x for x in labels if x not in flat]
    if missing:
        raise InvalidInput(f"the ranking must list all of {shown}; missing {', '.join(missing)}")
    if len(ranking) < 2:
        raise InvalidInput(
            "a ranking with everything tied compares nothing: rank at least two groups, "
            "mark all bad with a better answer, or skip the task"
        )
    return [x if isinstance(x, str) else x[0] if len(x) == 1 else sorted(x) for x in ranking]


def _validated(submission: RankingSubmission, labels: list[str]) -> RankingSubmission:
    """The submission with ranking and flags normalized, or InvalidInput naming the first
    problem."""
    all_bad = submission.all_bad
    if not isinstance(all_bad, bool):
        raise InvalidInput("all_bad must be true or false")
    if all_bad and submission.ranking:
        raise InvalidInput("an all-bad submission has no ranking: send one or the other")
    ranking = [] if all_bad else _canonical_ranking(submission.ranking, labels)

    flags = submission.flags if submission.flags is not None else {}
    if not isinstance(flags, dict):
        raise InvalidInput("flags must be an object {label: [flag, ...]}")
    normalized = {}
    for label, names in flags.items():
        if label not in labels:
            raise InvalidInput(f"flags name an unknown label {label!r}")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidInput(f"flags of {label} must be a list of flag names")
        bad = [n for n in names if n not in FLAG_NAMES]
        if bad:
            raise InvalidInput(f"unknown flag {bad[0]!r}; known: {', '.join(sorted(FLAG_NAMES))}")
        if names:
            normalized[label] = sorted(set(names))

    quality = submission.quality
    if quality is not None and (
        isinstance(quality, bool) or not isinstance(quality, int) or quality not in QUALITY_RANGE
    ):
        raise InvalidInput("quality must be an integer from 1 to 7")
    spent = submission.time_spent_ms
    if spent is not None and (
        isinstance(spent, bool) or not isinstance(spent, int) or not 0 <= spent <= MAX_TIME_SPENT_MS
    ):
        raise InvalidInput(f"time_spent_ms must be an integer from 0 to {MAX_TIME_SPENT_MS}")
    demonstration = submission.demonstration or ""
    if not isinstance(demonstration, str):
        raise InvalidInput("demonstration must be text")
    if "\x00" in demonstration:  # PostgreSQL cannot store it; no keyboard types it
        raise InvalidInput("the demonstration contains a NUL character")
    if len(demonstration) > settings.DEMONSTRATION_MAX_CHARS:
        raise InvalidInput(
            f"the demonstration is longer than {settings.DEMONSTRATION_MAX_CHARS} characters"
        )
    if all_bad and not demonstration.strip():
        raise InvalidInput(
            "all bad needs a better answer in demonstration (or skip the task with a reason)"
        )
    return RankingSubmission(
        ranking=ranking,
        all_bad=all_bad,
        flags=normalized,
        quality=quality,
        demonstration=demonstration.strip(),
        time_spent_ms=spent,
        client_submission_id=str(submission.client_submission_id or "")[:100],
    )


def _payload_hash(submission: RankingSubmission) -> str:
    """Fingerprint of the labeler's decision; time_spent_ms is a measurement, not part of it."""
    decision = {
        "ranking": submission.ranking,
        "flags": submission.flags,
        "quality": submission.quality,
        "demonstration": submission.demonstration,
    }
    if submission.all_bad:  # only then: the hashes of decisions stored before it stay valid
        decision["all_bad"] = True
    return hashlib.sha256(json.dumps(decision, sort_keys=True).encode()).hexdigest()


@transaction.atomic
def submit_ranking(
    labeler: AbstractBaseUser, assignment_id: int, submission: RankingSubmission
) -> tuple[Ranking, bool]:
    """Store the labeler's ranking of an assignment; return (ranking, created).

    The Ranking, its Comparisons (C(K,2) for a strict order, fewer with ties, none when all
    bad or for a hidden repeat), any Demonstration and, at random, the assignment's hidden
    repeat are written in one transaction.
    Sending the same decision again returns the stored ranking with created=False; a different
    one is a Conflict. Nothing is written when anything is wrong.
    """
    assignment = own_assignment_for_update(labeler, assignment_id)
    clean = _validated(submission, assignment.labels())
    digest = _payload_hash(clean)
    if assignment.state == Assignment.State.SUBMITTED:
        ranking = Ranking.objects.get(assignment=assignment)
        if ranking.payload_hash == digest:
            return ranking, False
        raise Conflict("this assignment was already submitted with a different ranking")
    now = timezone.now()
    check_open_for_work(assignment, now)

    by_label = dict(zip(assignment.labels(), assignment.order, strict=True))
    groups = [
        [by_label[x]] if isinstance(x, str) else [by_label[y] for y in x] for x in clean.ranking
    ]
    order = [cid for group in groups for cid in group]
    tied = [group for group in groups if len(group) > 1]
    spent = clean.time_spent_ms
    if spent is None and assignment.reserved_at is not None:
        spent = min(int((now - assignment.reserved_at).total_seconds() * 1000), MAX_TIME_SPENT_MS)
    ranking = sql.insert(
        Ranking,
        assignment_id=assignment.pk,
        labeler_id=labeler.pk,
        order=order,
        labels=[y for x in clean.ranking for y in ([x] if isinstance(x, str) else x)],
        tied=tied,
        all_bad=clean.all_bad,
        gold=False,
        flags={str(by_label[label]): names for label, names in clean.flags.items()},
        quality=clean.quality,
        time_spent_ms=spent,
        payload_hash=digest,
        client_submission_id=clean.client_submission_id,
        created_at=now,
    )
    is_repeat = assignment.repeat_of_id is not None
    if not is_repeat and (pairs := expand_to_comparisons(order, tied)):
        rows = ", ".join(["(%s, %s, %s)"] * len(pairs))
        sql.execute(
            f"{_INSERT_COMPARISONS} {rows}",
            [v for chosen, rejected in pairs for v in (ranking.pk, chosen, rejected)],
        )
    if clean.demonstration:
        Demonstration.objects.create(
            prompt_id=assignment.prompt_id,
            labeler=labeler,
            assignment_id=assignment.pk,
            text=clean.demonstration,
        )
    sql.execute(_MARK_SUBMITTED, [sql.db_datetime(now), assignment.pk])
    if not is_repeat and not clean.all_bad and _random.random() * 100 < settings.REPEAT_PERCENT:
        Assignment.objects.create(
            round_id=assignment.round_id,
            prompt_id=assignment.prompt_id,
            labeler=labeler,
            order=reshown(assignment.order),
            repeat_of_id=assignment.pk,
        )
    return ranking, True


_random = secrets.SystemRandom()


def reshown(order: list[int]) -> list[int]:
    """The same answers in an order that shows none of them at its old place (a derangement;
    a repeat's first answer is never under the letter it had)."""
    if len(order) < 2:
        raise ValueError("a repeat needs two or more answers to show in another order")
    while True:  # about e (2.7) draws on average, whatever K
        shuffled = _random.sample(order, len(order))
        if all(a != b for a, b in zip(shuffled, order, strict=True)):
            return shuffled
