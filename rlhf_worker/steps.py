"""One function per step kind: read the rows it needs, call rlhf_worker.training, return results.

The database writes of a step's result happen in labelapp.services.training.complete_run, by
the same kind's entry in its CHAIN (what the result means, which step follows).
"""

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from labelapp.models import (
    Demonstration,
    PolicyVersion,
    Prompt,
    RewardModelVersion,
)
from labelapp.models import TrainingRun as Run
from labelapp.services.exports import training_comparisons, training_rankings
from labelapp.services.training import policy_dir, report_progress
from rlhf_worker.launch import LaunchSettings, launch_training
from rlhf_worker.training.compare import compare_policies
from rlhf_worker.training.dpo import DPOTrainingConfig, train_dpo
from rlhf_worker.training.format import Message, as_messages, dialogue_turns
from rlhf_worker.training.generate import SamplingConfig, sample_completions
from rlhf_worker.training.online import OnlineRLConfig, train_online
from rlhf_worker.training.ppo import PPOConfig, train_ppo
from rlhf_worker.training.reward import RewardConfig, score_with, train_reward_model
from rlhf_worker.training.sft import SFTConfig, sft_model_dir

log = logging.getLogger(__name__)


def artifact_dir(kind: str, run: Run) -> Path:
    """The one place model directories are named: ARTIFACTS_DIR/<kind>/run-<id>."""
    return Path(settings.ARTIFACTS_DIR) / kind / f"run-{run.pk}"


def config_from(cls, values: dict):
    """A training config dataclass from user-given values; unknown names are an error."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings: {', '.join(unknown)}")
    return cls(**values)


def _report(run: Run, fraction: float, metrics: dict | None = None) -> None:
    """Progress, heartbeat and metrics, best effort: while the database restarts, training goes
    on (the step's result is written once it is back; complete_run retries until then)."""
    try:
        report_progress(run.pk, fraction, metrics)
    except (OperationalError, InterfaceError) as error:
        log.warning("run %s: progress not recorded (%s)", run.pk, error)
        close_old_connections()  # the broken connection is not reused


def progress_of(run: Run) -> Callable[[int, int, dict], None]:
    """A training callback that writes progress, heartbeat and per-step metrics to the run."""

    def on_step(step: int, total: int, metrics: dict) -> None:
        _report(run, step / max(total, 1), {"step": step, **metrics})

    return on_step


def launch_settings() -> LaunchSettings:
    """How this worker runs a training step: in its process, or under accelerate launch."""
    processes = settings.TRAINING_PROCESSES
    return LaunchSettings(
        processes=processes,
        config_file=settings.ACCELERATE_CONFIG,
        threads_per_process=max(1, settings.TORCH_THREADS // processes),
        timeout=settings.TRAINING_STEP_TIMEOUT or None,
    )


def train(run: Run, function: Callable[..., dict], *args, **kwargs) -> dict:
    """`function(*args, **kwargs, on_step=progress_of(run))`, here or in launched processes.

    Launched (TRAINING_PROCESSES > 1 or ACCELERATE_CONFIG), the step's inputs go to the
    processes as a file beside its artifact, and their progress comes back to the run.
    """
    launch = launch_settings()
    if not launch.enabled:
        return function(*args, **kwargs, on_step=progress_of(run))
    work_dir = Path(settings.ARTIFACTS_DIR) / "launch" / f"run-{run.pk}"
    heartbeat = lambda fraction: _report(run, fraction)  # noqa: E731
    return launch_training(function, args, kwargs, work_dir, launch, progress_of(run), heartbeat)


def conversation(text: str) -> list[Message]:
    """A stored prompt as the conversation every model step reads: SYSTEM_PROMPT, then its
    turns (an imported HH-RLHF dialogue is several)."""
    return as_messages(dialogue_turns(text), settings.SYSTEM_PROMPT)


def _hyperparameters(run: Run) -> dict:
    return dict(run.config.get("hyperparameters", {}))


def _start_policy(run: Run) -> str:
    """The SFT step's model when the chain has one, else the round's policy."""
    if run.start_policy is not None:
        return run.start_policy.metrics["artifact_path"]
    return policy_dir(run.round.policy_version)


def _summary(metrics: dict) -> dict:
    """Metrics without the per-step list (that is already on the run, step by step)."""
    return {k: v for k, v in metrics.items() if k != "steps"}


def reward_step(run: Run) -> dict:
    """Train a reward model on all rankings so far, from the round's policy (each weighted by
    its labeler's trust under the reward setting trust_weighting)."""
    hp = _hyperparameters(run)
    config = config_from(RewardConfig, hp.pop("reward", {}))
    out = artifact_dir("reward", run)
    examples = [
        dataclasses.replace(e, prompt=conversation(e.prompt))
        for e in training_rankings(run.round.number, trust_weighting=config.trust_weighting)
    ]
    metrics = train(
        run, train_reward_model, policy_dir(run.round.policy_version), examples, out, config
    )
    return {"artifact_path": str(out), "metrics": _summary(metrics)}


def sft_step(run: Run) -> dict:
    """Fine-tune the round's policy on the labelers' demonstrations (InstructGPT step 1)."""
    demos = Demonstration.objects.filter(assignment__round=run.round).values_list(
        "prompt__text", "text"
    )
    out = artifact_dir("sft", run)
    config = config_from(SFTConfig, _hyperparameters(run).get("sft", {}))
    examples = [(conversation(prompt), text) for prompt, text in demos]
    metrics = train(run, sft_model_dir, _start_policy(run), examples, out, config)
    return {"artifact_path": str(out), "metrics": _summary(metrics)}


def _method_hyperparameters(run: Run) -> dict:
    return {k: v for k, v in _hyperparameters(run).items() if k not in ("reward", "sft")}


def _anchor_policy(run: Run) -> str:
    """What PPO's anchor KL holds the policy to: this chain's SFT policy, else v1."""
    if run.start_policy is not None:
        return run.start_policy.metrics["artifact_path"]
    return policy_dir(PolicyVersion.objects.filter(number=1).first())


def reinforce_step(run: Run) -> dict:
    """PPO (ours), RLOO or GRPO (TRL) against the round's new reward model, KL to the start."""
    texts = run.round.prompts.filter(held_out=False).values_list("text", flat=True)
    prompts = [conversation(text) for text in texts]
    out = artifact_dir("policy", run)
    hp = _method_hyperparameters(run)
    start, rm_dir = _start_policy(run), run.reward_model.artifact_path
    if run.kind == Run.Kind.PPO:
        config = config_from(PPOConfig, hp)
        anchor = _anchor_policy(run)
        metrics = train(run, train_ppo, start, rm_dir, prompts, out, config, anchor_dir=anchor)
    else:
        config = config_from(OnlineRLConfig, hp)
        metrics = train(run, train_online, run.kind, start, rm_dir, prompts, out, config)
    return {"artifact_path": str(out), "metrics": _summary(metrics)}


def dpo_step(run: Run) -> dict:
    """DPO on every comparison so far."""
    hp = _method_hyperparameters(run)
    pairs = [
        (conversation(prompt), chosen, rejected)
        for prompt, chosen, rejected in training_comparisons(run.round.number)
    ]
    out = artifact_dir("policy", run)
    config = config_from(DPOTrainingConfig, hp)
    metrics = train(run, train_dpo, _start_policy(run), pairs, out, config)
    return {"artifact_path": str(out), "metrics": metrics}


def generate_step(run: Run) -> dict:
    """Sample K completions per prompt of the round from its policy version.

    A scored round (uncertain, or written by a new version) has its answers scored by its
    reward model; a new version's round has its parent's answers from the round before scored
    too, for the audit (AUDIT_ANSWERS).
    """
    round_ = run.round
    prompts = list(round_.prompts.order_by("id").values_list("id", "text"))
    config = config_from(
        SamplingConfig, {"engine": settings.GENERATION_ENGINE, **run.config, "k": round_.k}
    )
    generation = sample_completions(
        policy_dir(round_.policy_version),
        [conversation(text) for _, text in prompts],
        config,
        on_batch=lambda done, total: _report(run, done / total * 0.9),
    )
    result = {  # stored by complete_run, in the transaction that opens the round for labeling
        "completions": list(zip((pid for pid, _ in prompts), generation.completions, strict=True)),
        "metrics": {"prompts": len(prompts), **generation.metrics},
    }
    if round_.scored_by is not None:
        audit = round_.follows_round is not None and settings.AUDIT_ANSWERS > 0
        previous = _parents_answers(round_) if audit else []
        samples = [(pid, sample) for pid, batch in result["completions"] for sample in batch]
        texts = dict(prompts)
        rewards = score_with(
            round_.scored_by.artifact_path,
            [conversation(texts[pid]) for pid, _ in samples]
            + [conversation(prompt) for _, prompt, _ in previous],
            [sample["text"] for _, sample in samples] + [text for _, _, text in previous],
        )
        for (_, sample), reward in zip(samples, rewards, strict=False):
            sample["reward"] = reward
        if audit:
            scored = zip(previous, rewards[len(samples) :], strict=True)
            result["previous_rewards"] = [(pk, reward) for (pk, _, _), reward in scored]
    return result


def _parents_answers(round_) -> list[tuple[int, str, str]]:
    """(id, prompt, text) of the answers to this round's prompts in the round before."""
    return list(
        round_.follows_round.completions.filter(prompt__in=round_.prompts.all())
        .order_by("id")
        .values_list("id", "prompt__text", "text")
    )


def compare_step(run: Run) -> dict:
    """Two policy versions answer the same held-out prompts, scored by the newest reward model."""
    first, second = (PolicyVersion.objects.get(pk=pk) for pk in run.config["versions"])
    held_out = Prompt.objects.filter(held_out=True).order_by("id")
    pool = held_out if held_out.exists() else Prompt.objects.order_by("id")
    prompts = [
        conversation(text) for text in pool.values_list("text", flat=True)[: run.config["prompts"]]
    ]
    reward_model = RewardModelVersion.objects.order_by("-number").first()
    result = compare_policies(
        first.artifact_path,
        second.artifact_path,
        prompts,
        reward_model.artifact_path if reward_model else None,
    )
    result["versions"] = [first.number, second.number]
    result["reward_model"] = reward_model.number if reward_model else None
    result["held_out"] = pool is held_out
    return {"metrics": result}


STEPS: dict[str, Callable[[Run], dict]] = {
    Run.Kind.REWARD: reward_step,
    Run.Kind.SFT: sft_step,
    Run.Kind.PPO: reinforce_step,
    Run.Kind.RLOO: reinforce_step,
    Run.Kind.GRPO: reinforce_step,
    Run.Kind.DPO: dpo_step,
    Run.Kind.GENERATE: generate_step,
    Run.Kind.COMPARE: compare_step,
}
