"""Labeling rounds: creation, the checked state machine, and assignment slots."""

from collections.abc import Sequence

from django.db import transaction
from django.db.models import Count, Max, Q

from labelapp.models import Assignment, Completion, LabelingRound, PolicyVersion, Prompt
from labelapp.services.errors import InvalidTransition

State = LabelingRound.State

# draft -> generating -> labeling -> training -> done; any unfinished state -> failed; failed ->
# the state it failed from (retry). draft -> labeling is for rounds whose completions were
# imported rather than generated. done is final.
TRANSITIONS: dict[str, set[str]] = {
    State.DRAFT: {State.GENERATING, State.LABELING},
    State.GENERATING: {State.LABELING},
    State.LABELING: {State.TRAINING},
    State.TRAINING: {State.DONE},
    State.DONE: set(),
    State.FAILED: set(),  # only back to `failed_from`, see transition()
}


def allowed_transitions(round_: LabelingRound) -> set[str]:
    """The states this round may move to next."""
    if round_.state == State.FAILED:
        return {round_.failed_from} if round_.failed_from else set()
    if round_.state == State.DONE:
        return set()
    return TRANSITIONS[round_.state] | {State.FAILED}


@transaction.atomic
def transition(round_: LabelingRound, to_state: str, error: str = "") -> LabelingRound:
    """Move a round to `to_state`, or raise InvalidTransition. The only writer of `state`."""
    locked = LabelingRound.objects.select_for_update().get(pk=round_.pk)
    if to_state not in allowed_transitions(locked):
        raise InvalidTransition(
            f"round {locked.number} cannot go from {locked.state} to {to_state}"
        )
    if to_state == State.FAILED:
        locked.failed_from = locked.state
        locked.error = error
    elif locked.state == State.FAILED:
        locked.failed_from = ""
        locked.error = ""
    locked.state = to_state
    locked.save(update_fields=["state", "failed_from", "error", "updated_at"])
    round_.refresh_from_db()
    return round_


def next_round_number() -> int:
    """The number the next round gets."""
    return (LabelingRound.objects.aggregate(n=Max("number"))["n"] or 0) + 1


@transaction.atomic
def create_round(
    prompts: list[Prompt],
    *,
    k: int = 4,
    overlap: int = 1,
    policy_version: PolicyVersion | None = None,
    config: dict | None = None,
    follows_round: LabelingRound | None = None,
    **fields,
) -> LabelingRound:
    """A new draft round over `prompts` (the next round of `follows_round`, when given);
    `fields` are other LabelingRound columns (selection, scored_by, audit_of)."""
    round_ = LabelingRound.objects.create(
        number=next_round_number(),
        k=k,
        overlap=overlap,
        policy_version=policy_version,
        config=config or {},
        follows_round=follows_round,
        **fields,
    )
    round_.prompts.set(prompts)
    return round_


@transaction.atomic
def start_labeling(round_: LabelingRound, first: Sequence[int] = ()) -> int:
    """Open `overlap` slots for every prompt that has its K completions; move to labeling.

    Slots are handed out in the order they are made: the prompts in `first` in that order, then
    the others by id. Idempotent: prompts that already have slots get none more. Returns the
    slots created.
    """
    ready = (
        Completion.objects.filter(round=round_)
        .values("prompt_id")
        .annotate(n=Count("id"))
        .filter(n__gte=round_.k)
        .values_list("prompt_id", flat=True)
    )
    have_slots = set(
        Assignment.objects.filter(round=round_).values_list("prompt_id", flat=True).distinct()
    )
    todo = set(ready) - have_slots
    rank = {prompt_id: i for i, prompt_id in enumerate(first)}
    slots = [
        Assignment(round=round_, prompt_id=prompt_id)
        for prompt_id in sorted(todo, key=lambda pk: (rank.get(pk, len(rank)), pk))
        for _ in range(round_.overlap)
    ]
    Assignment.objects.bulk_create(slots)
    if round_.state != State.LABELING:
        transition(round_, State.LABELING)
    return len(slots)


def round_progress(round_: LabelingRound) -> dict:
    """Counts of the round's assignments by state, and the share done."""
    counts = Assignment.objects.filter(round=round_).aggregate(
        total=Count(
            "id", filter=~Q(state__in=[Assignment.State.EXPIRED, Assignment.State.SKIPPED])
        ),
        submitted=Count("id", filter=Q(state=Assignment.State.SUBMITTED)),
        reserved=Count("id", filter=Q(state=Assignment.State.RESERVED)),
        open=Count("id", filter=Q(state=Assignment.State.OPEN)),
        skipped=Count("id", filter=Q(state=Assignment.State.SKIPPED)),
    )
    counts["progress"] = counts["submitted"] / counts["total"] if counts["total"] else 0.0
    return counts


@transaction.atomic
def close_labeling(round_: LabelingRound) -> int:
    """Hand out no more of the round's work: its open slots expire (reserved ones may finish).

    The round stays in `labeling`, ready to train on what was ranked. Returns the slots closed.
    """
    if round_.state != State.LABELING:
        raise InvalidTransition(f"round {round_.number} is {round_.state}, not labeling")
    return Assignment.objects.filter(round=round_, state=Assignment.State.OPEN).update(
        state=Assignment.State.EXPIRED
    )
