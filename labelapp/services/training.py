"""The training chain of a round, as database state: start, claim, progress, finish, fail.

A round trains in steps, one TrainingRun each: reward -> (sft) -> policy (ppo/dpo) -> generate the
next round. The worker (rlhf_worker) runs a step's ML; everything that changes rows is here, so
the chain can be followed and tested without torch. CHAIN is the chain in one table: what each
step's result means and which step follows. Every step is idempotent: its outputs are keyed by its
run (`created_by_run`, `after_run`, `follows_round`, unique), so a re-delivered task finds them and
creates nothing twice.
"""

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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
from labelapp.services.selection import Answer, audit_pairs, least_separated

METHODS = ("ppo", "rloo", "grpo", "dpo")
STEP_TASK = "rlhf_worker.tasks.run_step"
Kind = TrainingRun.Kind
Status = TrainingRun.Status
State = LabelingRound.State
Selection = LabelingRound.Selection


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
    if round_.selection == Selection.AUDIT:
        raise Conflict(
            f"round {round_.number} audits v{round_.audit_of.number} and is not trained; its "
            "rankings join the training data of the next round that is"
        )
    if not round_.assignments.filter(ranking__isnull=False).exists():
        raise Conflict(f"round {round_.number} has no rankings to train on")
    transition(round_, State.TRAINING)
    config = {"method": method, "hyperparameters": hyperparameters}
    return _queue(Kind.REWARD, round=round_, config=config, created_by=user)


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
    selection: str = Selection.RANDOM,
) -> LabelingRound:
    """A round of up to `prompts` prompts drawn (seeded) from those not held out, of a source or
    tag when given, written by the current policy: its generation is queued.

    selection `uncertain`: UNCERTAIN_POOL_FACTOR times as many prompts are drawn and answered,
    the newest reward model scores the answers, and the round keeps the `prompts` it separates
    least (selection.least_separated), handed out least separated first.
    """
    if selection not in (Selection.RANDOM, Selection.UNCERTAIN):
        raise InvalidInput("selection must be random or uncertain")
    policy = PolicyVersion.objects.filter(is_current=True).first()
    if policy is None:
        raise Conflict("there is no current policy: run `manage.py bootstrap_model` first")
    scorer = None
    drawn = prompts
    if selection == Selection.UNCERTAIN:
        scorer = RewardModelVersion.objects.order_by("-number").first()
        if scorer is None:
            raise Conflict("uncertain selection needs a reward model: train a round first")
        drawn = prompts * settings.UNCERTAIN_POOL_FACTOR
    pool = Prompt.objects.filter(held_out=False)
    if source:
        pool = pool.filter(source=source)
    ids = sorted(pool.values_list("id", flat=True))
    if tag:  # tags are a JSON list: filtered here, the same way on every database
        ids = [pk for pk, tags in pool.values_list("id", "tags") if tag in (tags or [])]
    if not ids:
        raise InvalidInput("no prompts match")
    chosen = random.Random(seed).sample(ids, min(drawn, len(ids)))  # noqa: S311 (not security)
    config = {"sampling": sampling}
    if scorer is not None:
        config["selection"] = {"pool": sorted(chosen), "size": prompts}
    round_ = create_round(
        list(Prompt.objects.filter(id__in=chosen)),
        k=k,
        overlap=overlap,
        policy_version=policy,
        config=config,
        selection=selection,
        scored_by=scorer,
    )
    round_.labelers.set(labelers)
    start_generation(round_, sampling)
    return round_


@transaction.atomic
def start_generation(round_: LabelingRound, sampling: dict | None = None) -> TrainingRun:
    """Queue the generation of a draft round's completions by its policy version."""
    transition(round_, State.GENERATING)
    return _queue(Kind.GENERATE, round=round_, config=sampling or {})


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


# --- The chain: what each step's result means, and which step it queues -------------------


@dataclass(frozen=True)
class Step:
    """One kind of step in the chain.

    record(run, result): stores what the worker's result means in rows, in the transaction that
    marks the run succeeded, and returns metrics to keep on the run. then(run): the fields of the
    step it queues next (kind, links), or nothing. needs: the links (TrainingRun columns) a step
    of this kind reads, checked when it is queued.
    """

    record: Callable[[TrainingRun, dict], dict]
    then: Callable[[TrainingRun], dict] | None = None
    needs: tuple[str, ...] = ()


def _record_reward_model(run: TrainingRun, result: dict) -> dict:
    rm, _ = RewardModelVersion.objects.get_or_create(
        created_by_run=run,
        defaults={
            "number": _next_number(RewardModelVersion),
            "round": run.round,
            "artifact_path": result["artifact_path"],
            "metrics": result.get("metrics", {}),
        },
    )
    return {"reward_model_id": rm.pk}


def _sft_or_method(run: TrainingRun) -> dict:
    """After the reward model: SFT when the round has demonstrations, else the chosen method."""
    has_demos = Demonstration.objects.filter(assignment__round=run.round).exists()
    return {
        "kind": Kind.SFT if has_demos else run.config["method"],
        "reward_model": RewardModelVersion.objects.get(created_by_run=run),
    }


def _record_sft(run: TrainingRun, result: dict) -> dict:
    return {"artifact_path": result["artifact_path"]}


def _method_from_sft(run: TrainingRun) -> dict:
    return {"kind": run.config["method"], "reward_model": run.reward_model, "start_policy": run}


def _publish_policy(run: TrainingRun, result: dict) -> dict:
    """The new policy version becomes current (unless AUDIT_GATE holds it for the admin); the
    trained round is done and the next one, over the same prompts (an uncertain round: the
    same pool, chosen again), is opened for the new version to write. Its answers are scored by
    the reward model this step trained against, for the audit and the uncertain choice."""
    round_ = run.round
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
    if not settings.AUDIT_GATE:
        make_current(version)
    if round_.state == State.TRAINING:
        transition(round_, State.DONE)
    if not LabelingRound.objects.filter(follows_round=round_).exists():
        config = {"sampling": round_.config["sampling"]} if "sampling" in round_.config else {}
        uncertain = round_.selection == Selection.UNCERTAIN
        prompts = round_.prompts.all()
        if uncertain:
            pool, size = round_.config["selection"]["pool"], round_.config["selection"]["size"]
            config["selection"] = {"pool": pool, "size": size}
            prompts = Prompt.objects.filter(id__in=pool)
        following = create_round(
            list(prompts),
            k=round_.k,
            overlap=round_.overlap,
            policy_version=version,
            config=config,
            follows_round=round_,
            selection=round_.selection,
            scored_by=run.reward_model if uncertain or settings.AUDIT_ANSWERS else None,
        )
        transition(following, State.GENERATING)
    return {"policy_version": version.number}


def _generate_next_round(run: TrainingRun) -> dict:
    following = run.round.next_round
    return {
        "kind": Kind.GENERATE,
        "round": following,
        "config": following.config.get("sampling", {}),
    }


def _choose_uncertain(round_: LabelingRound, completions: list) -> list:
    """An uncertain round keeps the prompts whose answers its reward model separates least
    (least first), and records every candidate's gap in its config."""
    answers = {pid: [(s["text"], s["reward"]) for s in samples] for pid, samples in completions}
    size = round_.config["selection"]["size"]
    gaps = least_separated(answers, len(answers))
    round_.config["selection"]["gaps"] = {str(pid): gap for pid, gap in gaps}
    round_.config["selection"]["chosen"] = [pid for pid, _ in gaps[:size]]
    round_.save(update_fields=["config"])
    round_.prompts.set(round_.config["selection"]["chosen"])
    samples_of = dict(completions)
    return [(pid, samples_of[pid]) for pid, _ in gaps[:size]]


def _save_completions(run: TrainingRun, result: dict) -> dict:
    """Store the generated completions, with their rewards when the round is scored (once: a
    re-delivered step finds them), open the round for labeling and, for a round written by a
    new version, its audit round."""
    round_ = run.round
    stored = Completion.objects.filter(round=round_).count()
    if not stored:
        completions = result["completions"]
        if round_.selection == Selection.UNCERTAIN:
            completions = _choose_uncertain(round_, completions)
        rows = [
            Completion(
                prompt_id=prompt_id,
                round=round_,
                # PostgreSQL text cannot hold NUL, which an untrained byte-level model can emit.
                text=sample["text"].replace("\x00", ""),
                policy_version=round_.policy_version,
                sampling_params=sample.get("sampling", {}),
                reward=sample.get("reward"),
                prompt_tokens=sample.get("prompt_tokens"),
                completion_tokens=sample.get("completion_tokens"),
            )
            for prompt_id, samples in completions
            for sample in samples
        ]
        stored = len(Completion.objects.bulk_create(rows))
    start_labeling(round_, first=round_.config.get("selection", {}).get("chosen", []))
    metrics = {"completions": stored}
    if result.get("previous_rewards") is not None:
        audit = _open_audit(round_, dict(result["previous_rewards"]))
        metrics["audit_round"] = audit.number if audit else None
    return metrics


def _open_audit(round_: LabelingRound, previous_rewards: dict[int, float]) -> LabelingRound | None:
    """The audit of the version that wrote `round_`: its AUDIT_ANSWERS answers the reward model
    likes most (selection.audit_pairs), each against its parent's answer to the same prompt
    (`previous_rewards` scores the parent's answers, from the round before, by the same
    reward model). K=2, handed out before other rounds. Once per version."""
    version = round_.policy_version
    existing = LabelingRound.objects.filter(audit_of=version).first()
    if existing is not None:
        return existing

    def answers(rows) -> list[Answer]:
        return [Answer(c.pk, c.prompt_id, c.text, reward) for c, reward in rows]

    new = answers((c, c.reward) for c in round_.completions.exclude(reward=None))
    parents = Completion.objects.filter(pk__in=previous_rewards)
    old = answers((c, previous_rewards[c.pk]) for c in parents)
    pairs = audit_pairs(new, old, settings.AUDIT_ANSWERS)
    if not pairs:
        return None
    audit = create_round(
        list(Prompt.objects.filter(pk__in=[pair.new.prompt_id for pair in pairs])),
        k=2,
        overlap=round_.overlap,
        policy_version=version,
        config={"audit": [{"prompt": p.new.prompt_id, "reason": p.reason} for p in pairs]},
        selection=Selection.AUDIT,
        scored_by=round_.scored_by,
        audit_of=version,
    )
    audit.labelers.set(round_.labelers.all())
    originals = Completion.objects.in_bulk([a.id for pair in pairs for a in (pair.new, pair.old)])
    Completion.objects.bulk_create(
        Completion(
            prompt_id=answer.prompt_id,
            round=audit,
            text=answer.text,
            policy_version=originals[answer.id].policy_version,
            source=originals[answer.id].source,
            reward=answer.reward,
        )
        for pair in pairs
        for answer in (pair.new, pair.old)
    )
    start_labeling(audit, first=[pair.new.prompt_id for pair in pairs])
    return audit


def _record_nothing(run: TrainingRun, result: dict) -> dict:
    return {}


_POLICY_UPDATE = Step(_publish_policy, then=_generate_next_round, needs=("reward_model",))

# In chain order: reward -> (sft) -> policy update -> the next round's generation -> labeling.
CHAIN: dict[str, Step] = {
    Kind.REWARD: Step(_record_reward_model, then=_sft_or_method),
    Kind.SFT: Step(_record_sft, then=_method_from_sft),
    Kind.PPO: _POLICY_UPDATE,
    Kind.RLOO: _POLICY_UPDATE,
    Kind.GRPO: _POLICY_UPDATE,
    Kind.DPO: Step(_publish_policy, then=_generate_next_round),  # learns from the pairs alone
    Kind.GENERATE: Step(_save_completions),
    # Two versions side by side: its samples and scores are its metrics; nothing else changes.
    Kind.COMPARE: Step(_record_nothing),
}


def _queue(kind: str, **fields) -> TrainingRun:
    """Create a step with the links CHAIN says it needs, and send it to the workers."""
    missing = [name for name in CHAIN[kind].needs if fields.get(name) is None]
    if missing:
        raise ValueError(f"a {kind} step needs {', '.join(missing)}")
    return _enqueue(TrainingRun.objects.create(kind=kind, **fields))


@transaction.atomic
def complete_run(run: TrainingRun, result: dict) -> None:
    """Record a step's result (CHAIN[kind].record), mark it succeeded, queue what follows.

    Once per run: the row is locked, and a run already succeeded is left as it is. The next
    step is unique per run in the schema (after_run), so the database refuses a second one.
    """
    locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if locked.status == Status.SUCCEEDED:
        return
    step = CHAIN[locked.kind]
    metrics = {**locked.metrics, **result.get("metrics", {}), **step.record(locked, result)}
    locked.metrics, locked.status, locked.progress = metrics, Status.SUCCEEDED, 1.0
    locked.finished_at = timezone.now()
    locked.save(update_fields=["metrics", "status", "progress", "finished_at"])
    if step.then is not None:
        follow = step.then(locked)
        _queue(**{"round": locked.round, "config": locked.config, **follow, "after_run": locked})


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
    return _queue(Kind.COMPARE, config=config, created_by=user)
