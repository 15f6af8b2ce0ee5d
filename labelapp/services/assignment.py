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
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from labelapp.models import Assignment, LabelingRound, Prompt
from labelapp.services import sql
from labelapp.services.errors import Conflict, Expired, InvalidInput, NotFound

SKIP_REASON_MAX_CHARS = 500
_CLAIM_ATTEMPTS = 5


def reservation_window() -> timedelta:
    """How long a labeler holds an assignment before it may be given to someone else."""
    return timedelta(seconds=settings.ASSIGNMENT_RESERVATION_SECONDS)


# The SQL of the hot path (labelapp/services/sql.py says why it is not the ORM's).
_LOCK_LABELER = "SELECT id FROM auth_user WHERE id = %s"
# The columns _labelers_assignment reads, first in the statements that give it a row.
_ASSIGNMENT_COLUMNS = """
    a.id, a.round_id, a.prompt_id, a.state, a."order", a.reserved_at, a.reserved_until,
    a.repeat_of_id"""
_N_COLUMNS = 8
_ACTIVE = f"""
    SELECT {_ASSIGNMENT_COLUMNS}, r.number, r.k, p.text
    FROM labelapp_assignment a
    JOIN labelapp_labelinground r ON r.id = a.round_id
    JOIN labelapp_prompt p ON p.id = a.prompt_id
    WHERE a.labeler_id = %s AND a.state = 'reserved' AND a.reserved_until > %s
      AND r.state = 'labeling'
    ORDER BY a.reserved_at, a.id
    LIMIT 1"""  # noqa: S608 (a constant list of columns)
# The labeler's hidden repeat in a round that is free (open, or their reservation of it ran
# out) and whose original was submitted by the given time.
_REPEAT = """
    SELECT a.id FROM labelapp_assignment a
    JOIN labelapp_assignment original ON original.id = a.repeat_of_id
    WHERE a.round_id = {round} AND a.labeler_id = %s AND a.state IN ('open', 'reserved')
      AND (a.state = 'open' OR a.reserved_until <= %s) AND original.completed_at <= %s
    ORDER BY a.id
    LIMIT 1"""
# A round with chosen labelers is only for them; one with none chosen is for everyone. Audit
# rounds (a few tasks that check a new version) are handed out before the others. With each
# round, the labeler's repeat in it that is due (None nearly always), in the same trip.
_ROUNDS = f"""
    SELECT r.id, r.number, r.k, ({_REPEAT.format(round="r.id")})
    FROM labelapp_labelinground r
    WHERE r.state = 'labeling' AND (
        NOT EXISTS (SELECT 1 FROM labelapp_labelinground_labelers c
                    WHERE c.labelinground_id = r.id)
        OR EXISTS (SELECT 1 FROM labelapp_labelinground_labelers c
                   WHERE c.labelinground_id = r.id AND c.user_id = %s))
    ORDER BY r.selection = 'audit' DESC, r.number"""  # noqa: S608 (constant SQL)
_REPEAT_IN_ROUND = _REPEAT.format(round="%s")
# The round's first slot `labeler` may take, row-locked as it is read (skipping rows another
# transaction holds): one whose prompt they hold no other row of (a slot of their own is one
# whose reservation ran out), and not a hidden repeat (those are the labeler's own, below).
# Ordered by id alone, so the partial index assignment_free_slots can yield it directly instead
# of every free slot of the round being read and sorted; with statistics that say every slot is
# open (a fresh database, never analyzed since), PostgreSQL walks the primary key past the
# slots taken instead (docs/benchmarks.md). An OFFSET keeps the NOT EXISTS a probe of
# one_assignment_per_labeler_prompt per slot looked at (its repeat_of_id IS NULL matches that
# partial index's condition); as a join PostgreSQL would read all of the labeler's assignments
# on every call.
_FREE_SLOT = """
    SELECT a.id, a.prompt_id, p.text, a.labeler_id, a.state, a."order"
    FROM labelapp_assignment a
    JOIN labelapp_prompt p ON p.id = a.prompt_id
    WHERE a.round_id = %s AND a.state IN ('open', 'reserved')
      AND (a.state = 'open' OR a.reserved_until <= %s) AND a.repeat_of_id IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM labelapp_assignment seen
          WHERE seen.round_id = a.round_id AND seen.prompt_id = a.prompt_id
            AND seen.labeler_id = %s AND seen.id <> a.id AND seen.repeat_of_id IS NULL
          LIMIT 1 OFFSET 0)
    ORDER BY a.id
    LIMIT 1"""
_CLAIM_REPEAT = """
    UPDATE labelapp_assignment
    SET state = 'reserved', reserved_at = %s, reserved_until = %s
    WHERE id = %s AND labeler_id = %s AND state IN ('open', 'reserved')"""
_REPEAT_TASK = """
    SELECT a.prompt_id, p.text, a."order", a.repeat_of_id FROM labelapp_assignment a
    JOIN labelapp_prompt p ON p.id = a.prompt_id
    WHERE a.id = %s"""
_COMPLETION_IDS = (
    "SELECT id FROM labelapp_completion WHERE round_id = %s AND prompt_id = %s ORDER BY id"
)
_COMPLETION_TEXTS = "SELECT id, text FROM labelapp_completion WHERE id IN"
_CLAIM_OPEN = """
    UPDATE labelapp_assignment
    SET labeler_id = %s, "order" = %s, state = 'reserved', reserved_at = %s, reserved_until = %s
    WHERE id = %s AND state = 'open' AND labeler_id IS NULL"""
_RENEW = """
    UPDATE labelapp_assignment SET reserved_until = %s
    WHERE id = %s AND state = 'reserved' AND labeler_id = %s"""
_EXPIRE = """
    UPDATE labelapp_assignment SET state = 'expired'
    WHERE id = %s AND state = 'reserved' AND reserved_until <= %s"""


def completion_texts(ids: list[int]) -> dict[int, str]:
    """{completion id: text} of these completions (an assignment's order)."""
    marks = ", ".join(["%s"] * len(ids))
    return dict(sql.fetch_all(f"{_COMPLETION_TEXTS} ({marks})", ids)) if ids else {}


def _shuffled_completion_ids(round_: LabelingRound, prompt_id: int) -> list[int]:
    """K of the prompt's completions in a fresh random order (the A-D shown to one labeler)."""
    ids = [cid for (cid,) in sql.fetch_all(_COMPLETION_IDS, [round_.pk, prompt_id])]
    return secrets.SystemRandom().sample(ids, min(round_.k, len(ids)))


def _active(labeler: AbstractBaseUser, now) -> Assignment | None:
    """The labeler's reservation that is still running, if any (a reload gets the same task)."""
    row = sql.fetch_one(_ACTIVE, [labeler.pk, sql.db_datetime(now)])
    if row is None:
        return None
    assignment = _labelers_assignment(labeler, row)
    number, k, text = row[_N_COLUMNS:]
    assignment.round = _labeling_round(assignment.round_id, number, k)
    assignment.prompt = sql.instance(Prompt, id=assignment.prompt_id, text=text)
    return assignment


def _labelers_assignment(labeler: AbstractBaseUser, row: tuple) -> Assignment:
    """The assignment of `labeler` whose _ASSIGNMENT_COLUMNS begin `row`."""
    pk, round_id, prompt_id, state, order, reserved_at, reserved_until, repeat_of_id = row[
        :_N_COLUMNS
    ]
    return sql.instance(
        Assignment,
        id=pk,
        round_id=round_id,
        prompt_id=prompt_id,
        labeler_id=labeler.pk,
        state=state,
        order=sql.py_json(order),
        reserved_at=sql.py_datetime(reserved_at),
        reserved_until=sql.py_datetime(reserved_until),
        repeat_of_id=repeat_of_id,
    )


def _labeling_round(pk: int, number: int, k: int) -> LabelingRound:
    return sql.instance(
        LabelingRound, id=pk, number=number, k=k, state=LabelingRound.State.LABELING
    )


def _claim(slot: Assignment, labeler: AbstractBaseUser, now) -> Assignment | None:
    """Take a free slot for `labeler`: their assignment, None if someone else got it first."""
    until = now + reservation_window()
    if slot.labeler_id == labeler.pk:
        # The labeler's own reservation ran out but nobody took it: renew it, same order.
        if not sql.execute(_RENEW, [sql.db_datetime(until), slot.pk, labeler.pk]):
            return None
        slot.reserved_until = until
        return slot
    if slot.state == Assignment.State.OPEN:
        order = _shuffled_completion_ids(slot.round, slot.prompt_id)
        stored_order = sql.db_value(Assignment, "order", order)
        params = [labeler.pk, stored_order, sql.db_datetime(now), sql.db_datetime(until), slot.pk]
        if not sql.execute(_CLAIM_OPEN, params):
            return None
        # The row as the UPDATE left it, without reading it again.
        slot.labeler_id, slot.order, slot.state = labeler.pk, order, Assignment.State.RESERVED
        slot.reserved_at, slot.reserved_until = now, until
        return slot
    # Someone else's reservation ran out: close it (their late submit will get 410) and give
    # the prompt to this labeler in a new row.
    if not sql.execute(_EXPIRE, [slot.pk, sql.db_datetime(now)]):
        return None
    return Assignment.objects.create(
        round=slot.round,
        prompt=slot.prompt,
        labeler=labeler,
        order=_shuffled_completion_ids(slot.round, slot.prompt_id),
        state=Assignment.State.RESERVED,
        reserved_at=now,
        reserved_until=until,
    )


def _free_slot(round_: LabelingRound, labeler: AbstractBaseUser, now) -> Assignment | None:
    """The round's first slot `labeler` may take, row-locked, or None."""
    lock = sql.for_update(of="a", skip_locked=True)  # only the slot's own row is locked
    params = [round_.pk, sql.db_datetime(now), labeler.pk]
    row = sql.fetch_one(_FREE_SLOT + lock, params)
    if row is None:
        return None
    pk, prompt_id, text, labeler_id, state, order = row
    slot = sql.instance(
        Assignment,
        id=pk,
        round_id=round_.pk,
        prompt_id=prompt_id,
        labeler_id=labeler_id,
        state=state,
        order=sql.py_json(order),
    )
    slot.round = round_
    slot.prompt = sql.instance(Prompt, id=prompt_id, text=text)
    return slot


def _repeat_params(labeler: AbstractBaseUser, now, due: bool) -> list:
    """_REPEAT's parameters: a repeat is due once its original is REPEAT_DELAY_SECONDS old."""
    latest = now - timedelta(seconds=settings.REPEAT_DELAY_SECONDS) if due else now
    return [labeler.pk, sql.db_datetime(now), sql.db_datetime(latest)]


def _take_repeat(
    pk: int, round_: LabelingRound, labeler: AbstractBaseUser, now
) -> Assignment | None:
    """Reserve the labeler's hidden repeat `pk`: their assignment, or None if it is not free."""
    until = now + reservation_window()
    params = [sql.db_datetime(now), sql.db_datetime(until), pk, labeler.pk]
    if not sql.execute(_CLAIM_REPEAT, params):
        return None
    prompt_id, text, order, repeat_of_id = sql.fetch_one(_REPEAT_TASK, [pk])
    assignment = sql.instance(
        Assignment,
        id=pk,
        round_id=round_.pk,
        prompt_id=prompt_id,
        labeler_id=labeler.pk,
        state=Assignment.State.RESERVED,
        order=sql.py_json(order),
        reserved_at=now,
        reserved_until=until,
        repeat_of_id=repeat_of_id,
    )
    assignment.round = round_
    assignment.prompt = sql.instance(Prompt, id=prompt_id, text=text)
    return assignment


def _from_round(
    round_: LabelingRound, labeler: AbstractBaseUser, now, due_repeat: int | None
) -> Assignment | None:
    """The labeler's next assignment in the round: their hidden repeat that is due, else a free
    slot, else a repeat that is not due yet (nothing else is left for them)."""
    if due_repeat is not None and (repeat := _take_repeat(due_repeat, round_, labeler, now)):
        return repeat
    for _ in range(_CLAIM_ATTEMPTS):
        slot = _free_slot(round_, labeler, now)
        if slot is None:
            break
        claimed = _claim(slot, labeler, now)
        if claimed is not None:
            return claimed
    row = sql.fetch_one(_REPEAT_IN_ROUND, [round_.pk, *_repeat_params(labeler, now, False)])
    return _take_repeat(row[0], round_, labeler, now) if row else None


@transaction.atomic
def assign_next(labeler: AbstractBaseUser) -> Assignment | None:
    """The labeler's next assignment, reserved for them; None when there is no work.

    Respects each round's overlap (slots were made per prompt when labeling started), never
    gives one labeler the same prompt of a round twice (but for a hidden repeat, which is
    theirs alone), and never hands a slot to two people.
    The assignment comes with its round and prompt, read in the same statements.
    """
    now = timezone.now()
    # One labeler's own requests (two tabs, a double click) queue here, so they can never be
    # given two different prompts' slots at once or race on the same one. The reservation is
    # read by the next statement, which sees what a request that held the lock committed.
    sql.fetch_one(_LOCK_LABELER + sql.for_update(), [labeler.pk])
    current = _active(labeler, now)
    if current is not None:
        return current
    rounds = sql.fetch_all(_ROUNDS, [*_repeat_params(labeler, now, True), labeler.pk])
    for round_id, number, k, due_repeat in rounds:
        round_ = _labeling_round(round_id, number, k)
        if assignment := _from_round(round_, labeler, now, due_repeat):
            return assignment
    return None


_OWN = f"""
    SELECT {_ASSIGNMENT_COLUMNS}, r.number, r.state
    FROM labelapp_assignment a
    JOIN labelapp_labelinground r ON r.id = a.round_id
    WHERE a.id = %s AND a.labeler_id = %s"""  # noqa: S608 (a constant list of columns)


def own_assignment(
    labeler: AbstractBaseUser, assignment_id: int, *, for_update: bool = False
) -> Assignment | None:
    """The labeler's assignment with its round's number and state, or None; for_update locks its
    row for the rest of the transaction. Someone else's assignment is None too: its existence is
    none of this user's business. The one lookup the pages and the services use."""
    query = _OWN + (sql.for_update(of="a") if for_update else "")
    row = sql.fetch_one(query, [assignment_id, labeler.pk])
    if row is None:
        return None
    assignment = _labelers_assignment(labeler, row)
    number, round_state = row[_N_COLUMNS:]
    assignment.round = sql.instance(
        LabelingRound, id=assignment.round_id, number=number, state=round_state
    )
    return assignment


def own_assignment_for_update(labeler: AbstractBaseUser, assignment_id: int) -> Assignment:
    """The labeler's assignment, row-locked for the rest of the transaction, or NotFound."""
    assignment = own_assignment(labeler, assignment_id, for_update=True)
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
    if assignment.repeat_of_id is None:
        # A fresh slot keeps the prompt's overlap; the skipper can never get it (they have a
        # row). A skipped repeat is just not measured.
        Assignment.objects.create(round=assignment.round, prompt_id=assignment.prompt_id)
    return assignment


def done_in_round(labeler: AbstractBaseUser, round_: LabelingRound) -> int:
    """How many assignments of this round the labeler has submitted."""
    return Assignment.objects.filter(
        labeler=labeler, round=round_, state=Assignment.State.SUBMITTED
    ).count()
