"""Handing out work: the next assignment for a labeler, reservations, skips.

Concurrency: on PostgreSQL a free slot is taken with SELECT ... FOR UPDATE SKIP LOCKED, so
labelers asking at the same moment each lock a different row instead of queueing on one. SQLite
has no row locks; there the settings open every transaction with BEGIN IMMEDIATE, which
serializes writers, so the read-then-claim below cannot interleave. On both, the claim itself is
a conditional UPDATE that only succeeds while the slot is still free.
"""

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from labelapp.models import Assignment, Completion, LabelingRound
from labelapp.services.errors import Conflict, Expired, InvalidInput, NotFound

SKIP_REASON_MAX_CHARS = 500
_CLAIM_ATTEMPTS = 5


def reservation_window() -> timedelta:
    """How long a labeler holds an assignment before it may be given to someone else."""
    return timedelta(seconds=settings.ASSIGNMENT_RESERVATION_SECONDS)


def _shuffled_completion_ids(round_: LabelingRound, prompt_id: int) -> list[int]:
    """K of the prompt's completions in a fresh random order (the A-D shown to one labeler)."""
    ids = list(
        Completion.objects.filter(round=round_, prompt_id=prompt_id)
        .order_by("id")
        .values_list("id", flat=True)
    )
    return secrets.SystemRandom().sample(ids, min(round_.k, len(ids)))


def _active(labeler: AbstractBaseUser, now) -> Assignment | None:
    """The labeler's reservation that is still running, if any (a reload gets the same task)."""
    return (
        Assignment.objects.select_related("round", "prompt")
        .filter(
            labeler=labeler,
            state=Assignment.State.RESERVED,
            reserved_until__gt=now,
            round__state=LabelingRound.State.LABELING,
        )
        .order_by("reserved_at", "id")
        .first()
    )


def _claim(slot: Assignment, labeler: AbstractBaseUser, now) -> Assignment | None:
    """Take a free slot for `labeler`: their assignment, None if someone else got it first."""
    reserved = {
        "state": Assignment.State.RESERVED,
        "reserved_at": now,
        "reserved_until": now + reservation_window(),
    }
    if slot.labeler_id == labeler.pk:
        # The labeler's own reservation ran out but nobody took it: renew it, same order.
        changes = {"reserved_until": reserved["reserved_until"]}
        claimed = Assignment.objects.filter(pk=slot.pk, state=Assignment.State.RESERVED).update(
            **changes
        )
    elif slot.state == Assignment.State.OPEN:
        changes = {
            "labeler": labeler,
            "order": _shuffled_completion_ids(slot.round, slot.prompt_id),
            **reserved,
        }
        claimed = Assignment.objects.filter(
            pk=slot.pk, state=Assignment.State.OPEN, labeler__isnull=True
        ).update(**changes)
    else:
        # Someone else's reservation ran out: close it (their late submit will get 410) and
        # give the prompt to this labeler in a new row.
        expired = Assignment.objects.filter(
            pk=slot.pk, state=Assignment.State.RESERVED, reserved_until__lte=now
        ).update(state=Assignment.State.EXPIRED)
        if not expired:
            return None
        return Assignment.objects.create(
            round=slot.round,
            prompt=slot.prompt,
            labeler=labeler,
            order=_shuffled_completion_ids(slot.round, slot.prompt_id),
            **reserved,
        )
    if not claimed:
        return None
    for name, value in changes.items():  # the row as the UPDATE left it, without reading it
        setattr(slot, name, value)
    return slot


def _free_slots(round_: LabelingRound, labeler: AbstractBaseUser, now):
    """The round's slots `labeler` may take, first made first, row-locked as they are read.

    One round at a time, ordered by id alone: the partial index assignment_free_slots then
    yields the first free slot directly, instead of every free slot of the round being read
    and sorted on each call.
    """
    seen = Assignment.objects.filter(round=round_, prompt=OuterRef("prompt"), labeler=labeler)
    free = Q(state=Assignment.State.OPEN) | Q(
        state=Assignment.State.RESERVED, reserved_until__lte=now
    )
    return (
        Assignment.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("prompt")  # what the task shows; only the slot's own row is locked
        .filter(free, round=round_)
        .filter(~Exists(seen) | Q(labeler=labeler))
        .order_by("id")
    )


@transaction.atomic
def assign_next(labeler: AbstractBaseUser) -> Assignment | None:
    """The labeler's next assignment, reserved for them; None when there is no work.

    Respects each round's overlap (slots were made per prompt when labeling started), never
    gives one labeler the same prompt of a round twice, and never hands a slot to two people.
    """
    now = timezone.now()
    # One labeler's own requests (two tabs, a double click) queue here, so they can never be
    # given two different prompts' slots at once or race on the same one.
    list(get_user_model().objects.select_for_update().filter(pk=labeler.pk).values_list("pk"))
    current = _active(labeler, now)
    if current is not None:
        return current

    # A round with chosen labelers is only for them; one with none chosen is for everyone.
    chosen = LabelingRound.labelers.through.objects.filter(labelinground_id=OuterRef("pk"))
    rounds = (
        LabelingRound.objects.filter(state=LabelingRound.State.LABELING)
        .filter(~Exists(chosen) | Exists(chosen.filter(user_id=labeler.pk)))
        .order_by("number")
    )
    for round_ in rounds:
        candidates = _free_slots(round_, labeler, now)
        for _ in range(_CLAIM_ATTEMPTS):
            slot = candidates.first()
            if slot is None:
                break
            slot.round = round_
            claimed = _claim(slot, labeler, now)
            if claimed is not None:
                return claimed
    return None


def own_assignment_for_update(labeler: AbstractBaseUser, assignment_id: int) -> Assignment:
    """The labeler's assignment, row-locked for the rest of the transaction, or NotFound.

    Someone else's assignment is "not found" too: its existence is none of this user's business.
    """
    assignment = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("round")
        .filter(pk=assignment_id, labeler=labeler)
        .first()
    )
    if assignment is None:
        raise NotFound(f"assignment {assignment_id} not found")
    return assignment


def check_open_for_work(assignment: Assignment, now) -> None:
    """Raise unless the assignment may still be ranked or skipped right now."""
    if assignment.state == Assignment.State.SKIPPED:
        raise Conflict("this assignment was skipped")
    if assignment.state == Assignment.State.SUBMITTED:
        raise Conflict("this assignment was already submitted")
    if assignment.state == Assignment.State.EXPIRED or (
        assignment.reserved_until is not None and assignment.reserved_until <= now
    ):
        raise Expired("this assignment's reservation expired; ask for the next task")
    if assignment.round.state != LabelingRound.State.LABELING:
        raise Conflict(f"round {assignment.round.number} is no longer open for labeling")


@transaction.atomic
def skip_assignment(labeler: AbstractBaseUser, assignment_id: int, reason: str) -> Assignment:
    """Give an assignment back with a reason; its prompt goes to another labeler.

    Skipping an already skipped assignment again changes nothing.
    """
    assignment = own_assignment_for_update(labeler, assignment_id)
    if assignment.state == Assignment.State.SKIPPED:
        return assignment
    now = timezone.now()
    check_open_for_work(assignment, now)
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a reason is required to skip")
    if "\x00" in reason:
        raise InvalidInput("the reason contains a NUL character")
    if len(reason) > SKIP_REASON_MAX_CHARS:
        raise InvalidInput(f"the reason is longer than {SKIP_REASON_MAX_CHARS} characters")
    assignment.state = Assignment.State.SKIPPED
    assignment.skip_reason = reason.strip()
    assignment.completed_at = now
    assignment.save(update_fields=["state", "skip_reason", "completed_at"])
    # A fresh slot keeps the prompt's overlap; the skipper can never get it (they have a row).
    Assignment.objects.create(round=assignment.round, prompt_id=assignment.prompt_id)
    return assignment


def done_in_round(labeler: AbstractBaseUser, round_: LabelingRound) -> int:
    """How many assignments of this round the labeler has submitted."""
    return Assignment.objects.filter(
        labeler=labeler, round=round_, state=Assignment.State.SUBMITTED
    ).count()
