"""Starting a training round from a labeled round (the worker side is rlhf_worker)."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from labelapp.models import LabelingRound, TrainingRun
from labelapp.queue import enqueue_on_commit
from labelapp.services.errors import Conflict, InvalidInput
from labelapp.services.rounds import transition

METHODS = ("ppo", "rloo", "grpo", "dpo")
TRAIN_TASK = "rlhf_worker.tasks.train_round"


@transaction.atomic
def start_training(
    round_: LabelingRound, method: str, hyperparameters: dict, user: AbstractBaseUser
) -> TrainingRun:
    """Close the round's labeling, record a queued TrainingRun and enqueue it after commit."""
    if method not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}")
    if round_.state != LabelingRound.State.LABELING:
        raise Conflict(f"round {round_.number} is {round_.state}; only a labeling round can train")
    if not round_.assignments.filter(ranking__isnull=False).exists():
        raise Conflict(f"round {round_.number} has no rankings to train on")
    transition(round_, LabelingRound.State.TRAINING)
    run = TrainingRun.objects.create(
        round=round_,
        kind=TrainingRun.Kind.REWARD,
        config={"method": method, **hyperparameters},
        created_by=user,
    )
    enqueue_on_commit(TRAIN_TASK, run.pk, queue="gpu")
    return run
