"""The training chain of a round, as database state: start, claim, progress, finish, fail.

A round trains in steps, one TrainingRun each: reward -> (sft) -> policy (ppo/dpo) -> generate the
next round. The worker (rlhf_worker) runs a step's ML; everything that changes rows is here, so
the chain can be followed and tested without torch. Every step is idempotent: its outputs are
keyed by its run (`created_by_run`), so a re-delivered task finds them and creates nothing twice.
"""

import random
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from labelapp.models import (
    Completion,
    Demonstration,
    LabelingRound,
    PolicyVersion,
    Prompt,
    RewardModelVersion,
    TrainingRun,
)
from labelapp.queue import enqueue_on_commit
from labelapp.services.errors import Conflict, InvalidInput
from labelapp.services.hyperparameters import check_hyperparameters
from labelapp.services.rounds import create_round, start_labeling, transition

METHODS = ("ppo", "rloo", "grpo", "dpo")
STEP_TASK = "rlhf_worker.tasks.run_step"
Kind = TrainingRun.Kind
Status = TrainingRun.Status
State = LabelingRound.State


def _enqueue(run: TrainingRun) -> TrainingRun:
    TrainingRun.objects.filter(pk=run.pk).update(sent_at=timezone.now())
    enqueue_on_commit(STEP_TASK, run.pk, queue="gpu")
    return run


def resend_stuck_runs() -> list[int]:
    """Send again the steps that no worker holds; returns their ids.

    Two cases: a run queued and not sent for TRAINING_RESEND_SECONDS (the send failed while the
    broker was down, or the broker lost the message), and a running one whose heartbeat is older
    than TRAINING_STALE_SECONDS (its worker died). A duplicate message is harmless: claim_run
    lets one worker run a step, and a finished step is never run again.
    """
    now = timezone.now()
    resend_before = now - timedelta(seconds=settings.TRAINING_RESEND_SECONDS)
    stale = now - timedelta(seconds=settings.TRAINING_STALE_SECONDS)
    not_sent_since = Q(sent_at__isnull=True) | Q(sent_at__lt=resend_before)
    stuck = TrainingRun.objects.filter(
        Q(status=Status.QUEUED, created_at__lt=resend_before)
        | Q(status=Status.RUNNING, heartbeat_at__lt=stale),
        not_sent_since,
    ).values_list("pk", flat=True)
    ids = list(stuck)
    for run_id in ids:
        with transaction.atomic():
            _enqueue(TrainingRun(pk=run_id))
    return ids


def policy_dir(version: PolicyVersion | None) -> str:
    """Where a policy version's model is (the base model before the first version)."""
    return version.artifact_path if version else settings.BASE_MODEL


@transaction.atomic
def start_training(
    round_: LabelingRound, method: str, hyperparameters: dict, user: AbstractBaseUser | None
) -> TrainingRun:
    """Close the round's labeling and queue its first step, the reward model."""
    if method not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}")
    check_hyperparameters(method, hyperparameters)
    if round_.state != State.LABELING:
        raise Conflict(f"round {round_.number} is {round_.state}; only a labeling round can train")
    if not round_.assignments.filter(ranking__isnull=False).exists():
        raise Conflict(f"round {round_.number} has no rankings to train on")
    transition(round_, State.TRAINING)
    config = {"method": method, "hyperparameters": hyperparameters}
    return _enqueue(
        TrainingRun.objects.create(round=round_, kind=Kind.REWARD, config=config, created_by=user)
    )


@transaction.atomic
def create_round_from_pool(
    *,
    prompts: int,
    k: int,
    overlap: int,
    sampling: dict,
    seed: int = 0,
    source: str = "",
    tag: str = "",
    labelers: Iterable[AbstractBaseUser] = (),
) -> LabelingRound:
    """A round of up to `prompts` prompts drawn (seeded) from those not held out, of a source or
    tag when given, written by the current policy: its generation is queued."""
    policy = PolicyVersion.objects.filter(is_current=True).first()
    if policy is None:
        raise Conflict("there is no current policy: run `manage.py bootstrap_model` first")
    pool = Prompt.objects.filter(held_out=False)
    if source:
        pool = pool.filter(source=source)
    ids = sorted(pool.values_list("id", flat=True))
    if tag:  # tags are a JSON list: filtered here, the same way on every database
        ids = [pk for pk, tags in pool.values_list("id", "tags") if tag in (tags or [])]
    if not ids:
        raise InvalidInput("no prompts match")
    chosen = random.Random(seed).sample(ids, min(prompts, len(ids)))  # noqa: S311 (not security)
    round_ = create_round(
        list(Prompt.objects.filter(id__in=chosen)),
        k=k,
        overlap=overlap,
        policy_version=policy,
        config={"sampling": sampling},
    )
    round_.labelers.set(labelers)
    start_generation(round_, sampling)
    return round_


@transaction.atomic
def start_generation(round_: LabelingRound, sampling: dict | None = None) -> TrainingRun:
    """Queue the generation of a draft round's completions by its policy version."""
    transition(round_, State.GENERATING)
    return _enqueue(
        TrainingRun.objects.create(round=round_, kind=Kind.GENERATE, config=sampling or {})
    )


def claim_run(run_id: int) -> TrainingRun | None:
    """Mark a run running for this worker; None if it is finished or another worker is alive on it.

    A run whose heartbeat is older than TRAINING_STALE_SECONDS belongs to a dead worker (the
    broker re-delivered its task), so it can be taken over.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.TRAINING_STALE_SECONDS)
    claimable = Q(status=Status.QUEUED) | Q(status=Status.RUNNING, heartbeat_at__lt=stale)
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None:
        return None
    claimed = TrainingRun.objects.filter(claimable, pk=run_id).update(
        status=Status.RUNNING, started_at=now, heartbeat_at=now, attempts=run.attempts + 1
    )
    return TrainingRun.objects.select_related("round").get(pk=run_id) if claimed else None


def report_progress(run_id: int, fraction: float, step_metrics: dict | None = None) -> None:
    """Record progress (0-1), a heartbeat and, when given, one step's metrics."""
    run = TrainingRun.objects.get(pk=run_id)
    metrics = run.metrics
    if step_metrics:
        metrics.setdefault("steps", []).append(step_metrics)
    TrainingRun.objects.filter(pk=run_id, status=Status.RUNNING).update(
        progress=min(max(fraction, 0.0), 1.0), heartbeat_at=timezone.now(), metrics=metrics
    )


def _next_number(model) -> int:
    return (model.objects.aggregate(n=Max("number"))["n"] or 0) + 1


@transaction.atomic
def make_current(version: PolicyVersion) -> PolicyVersion:
    """Make `version` the current policy (also the rollback to an earlier one)."""
    PolicyVersion.objects.filter(is_current=True).exclude(pk=version.pk).update(is_current=False)
    PolicyVersion.objects.filter(pk=version.pk).update(is_current=True)
    version.refresh_from_db()
    return version


def register_base_policy(artifact_path: str) -> PolicyVersion:
    """Version 1: the base model, current when nothing else is."""
    version, _ = PolicyVersion.objects.get_or_create(
        number=1, defaults={"artifact_path": artifact_path, "method": "base"}
    )
    if not PolicyVersion.objects.filter(is_current=True).exists():
        make_current(version)
    return version


def _follow_up(run: TrainingRun) -> TrainingRun | None:
    """Queue the step after `run` (once: a re-delivery finds the one made before)."""
    round_, config = run.round, run.config
    existing = TrainingRun.objects.filter(config__after_run=run.pk).first()
    if existing is not None:
        return existing
    follow = {**config, "after_run": run.pk}
    if run.kind == Kind.REWARD:
        has_demos = Demonstration.objects.filter(assignment__round=round_).exists()
        kind = Kind.SFT if has_demos else config["method"]
        follow["reward_model_id"] = run.metrics["reward_model_id"]
    elif run.kind == Kind.SFT:
        kind = config["method"]
        follow["start_policy_dir"] = run.metrics["artifact_path"]
    else:
        return None
    return _enqueue(TrainingRun.objects.create(round=round_, kind=kind, config=follow))


@transaction.atomic
def complete_run(run: TrainingRun, result: dict) -> None:
    """Store a step's result, apply what it means for the round, and queue the next step."""
    run.refresh_from_db(fields=["metrics"])  # keep the per-step metrics written while it ran
    metrics = {**run.metrics, **result.get("metrics", {})}
    round_ = run.round
    if run.kind == Kind.REWARD:
        rm, _ = RewardModelVersion.objects.get_or_create(
            created_by_run=run,
            defaults={
                "number": _next_number(RewardModelVersion),
                "round": round_,
                "artifact_path": result["artifact_path"],
                "metrics": result.get("metrics", {}),
            },
        )
        metrics["reward_model_id"] = rm.pk
    elif run.kind == Kind.SFT:
        metrics["artifact_path"] = result["artifact_path"]
    elif run.kind in METHODS:
        parent = round_.policy_version or PolicyVersion.objects.filter(is_current=True).first()
        version, _ = PolicyVersion.objects.get_or_create(
            created_by_run=run,
            defaults={
                "number": _next_number(PolicyVersion),
                "parent": parent,
                "artifact_path": result["artifact_path"],
                "method": run.kind,
                "metrics": result.get("metrics", {}),
            },
        )
        make_current(version)
        metrics["policy_version"] = version.number
        _open_next_round(round_, version)
    elif run.kind == Kind.GENERATE:
        start_labeling(round_)
    # Kind.COMPARE: its samples and scores are its metrics; nothing else changes.
    run.metrics = metrics
    run.status = Status.SUCCEEDED
    run.progress = 1.0
    run.finished_at = timezone.now()
    run.save(update_fields=["metrics", "status", "progress", "finished_at"])
    _follow_up(run)


def _open_next_round(trained: LabelingRound, version: PolicyVersion) -> LabelingRound:
    """Finish the trained round; the next one asks the new policy about the same prompts."""
    if trained.state == State.TRAINING:
        transition(trained, State.DONE)
    following = LabelingRound.objects.filter(config__follows_round=trained.pk).first()
    if following is None:
        following = create_round(
            list(trained.prompts.all()),
            k=trained.k,
            overlap=trained.overlap,
            policy_version=version,
            config={"follows_round": trained.pk},
        )
        start_generation(following, trained.config.get("sampling"))
    return following


def save_generated(run: TrainingRun, outputs: list[tuple[int, list[dict]]]) -> int:
    """Store the generated completions of a round once; returns how many are stored."""
    round_ = run.round
    with transaction.atomic():
        if Completion.objects.filter(round=round_).exists():
            return Completion.objects.filter(round=round_).count()  # a re-delivered step
        rows = [
            Completion(
                prompt_id=prompt_id,
                round=round_,
                # PostgreSQL text cannot hold NUL, which an untrained byte-level model can emit.
                text=sample["text"].replace("\x00", ""),
                policy_version=round_.policy_version,
                sampling_params=sample.get("sampling", {}),
                prompt_tokens=sample.get("prompt_tokens"),
                completion_tokens=sample.get("completion_tokens"),
            )
            for prompt_id, samples in outputs
            for sample in samples
        ]
        Completion.objects.bulk_create(rows)
        return len(rows)


@transaction.atomic
def fail_run(run_id: int, error: str) -> None:
    """Mark a step failed and its round failed, with the error for admins to read."""
    run = TrainingRun.objects.select_related("round").get(pk=run_id)
    run.status = Status.FAILED
    run.error = error
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    if run.round is not None and run.round.state not in (State.FAILED, State.DONE):
        transition(run.round, State.FAILED, error=f"{run.kind} step failed: {error[-2000:]}")


@transaction.atomic
def retry_run(run: TrainingRun) -> TrainingRun:
    """Queue a failed step again, and move its round back to where it failed."""
    run.refresh_from_db()
    if run.status not in (Status.FAILED, Status.CANCELLED):
        raise Conflict(f"run {run.pk} is {run.status}; only a failed or cancelled run can retry")
    if run.round is not None and run.round.state == State.FAILED:
        transition(run.round, run.round.failed_from)
    TrainingRun.objects.filter(pk=run.pk).update(status=Status.QUEUED, error="", progress=0.0)
    run.refresh_from_db()
    return _enqueue(run)


@transaction.atomic
def cancel_run(run: TrainingRun, user: AbstractBaseUser | None = None) -> TrainingRun:
    """Cancel a step no worker has started; its round fails, so it can be retried later.

    A running step is not interrupted (a worker holds it); its message, if it is delivered
    later, finds the run cancelled and does nothing.
    """
    cancelled = TrainingRun.objects.filter(pk=run.pk, status=Status.QUEUED).update(
        status=Status.CANCELLED, finished_at=timezone.now(), error=f"cancelled by {user or 'admin'}"
    )
    run.refresh_from_db()
    if not cancelled:
        raise Conflict(f"run {run.pk} is {run.status}; only a queued run can be cancelled")
    if run.round is not None and run.round.state not in (State.FAILED, State.DONE):
        transition(run.round, State.FAILED, error=f"{run.kind} step cancelled by {user or 'admin'}")
    return run


@transaction.atomic
def start_comparison(
    first: PolicyVersion, second: PolicyVersion, prompts: int, user: AbstractBaseUser | None
) -> TrainingRun:
    """Queue a side-by-side: both versions answer the same held-out prompts (greedy)."""
    if first.pk == second.pk:
        raise InvalidInput("choose two different versions")
    if not 1 <= prompts <= 256:
        raise InvalidInput("prompts must be between 1 and 256")
    config = {"versions": [first.pk, second.pk], "prompts": prompts}
    return _enqueue(
        TrainingRun.objects.create(kind=Kind.COMPARE, config=config, created_by=user, round=None)
    )
