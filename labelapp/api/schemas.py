"""Request and response shapes of /api/v1 (they make the OpenAPI schema)."""

from datetime import datetime

from ninja import Field, Schema
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt

from rlhf_worker.training.configs import SamplingConfig

SAMPLING = SamplingConfig()


class MessageOut(Schema):
    role: str = Field(..., description="user or assistant")
    content: str


class PromptOut(Schema):
    id: int
    text: str
    messages: list[MessageOut] = Field(
        default_factory=list,
        description="A dialogue's turns, ending on the user's turn to answer; empty for a "
        "single prompt (then `text` is the prompt).",
    )


class CompletionOut(Schema):
    label: str
    id: int
    text: str


class TaskOut(Schema):
    assignment_id: int
    round: int
    prompt: PromptOut
    completions: list[CompletionOut]
    expires_at: datetime


class RankingIn(Schema):
    ranking: list[str | list[str]] = Field(
        default_factory=list,
        description=(
            "Labels best -> worst, e.g. ['C','A','D','B']; a list inside it is a tie, answers "
            "ranked equally good: ['C',['A','D'],'B']. Empty when all_bad."
        ),
        examples=[["C", "A", "D", "B"], ["C", ["A", "D"], "B"]],
    )
    all_bad: StrictBool = Field(
        False,
        description="Every answer is unacceptable: no ranking, and a demonstration is required.",
    )
    flags: dict[str, list[str]] = Field(default_factory=dict, description="{label: [flag, ...]}")
    # Strict: JSON true is not the integer 1.
    quality: StrictInt | None = Field(None, description="Overall quality, 1-7.")
    demonstration: str = Field("", description="A better answer, written by the labeler.")
    time_spent_ms: StrictInt | None = Field(
        None, description="Time on task; server-measured if absent."
    )
    client_submission_id: str = Field("", max_length=100)


class RankingOut(Schema):
    ranking_id: int
    comparisons: int


class SkipIn(Schema):
    reason: str


class SkipOut(Schema):
    assignment_id: int
    state: str


class Detail(Schema):
    detail: str


class ValidationIssue(Schema):
    type: str
    loc: list[str | int] = Field(..., description="Where: ['body', 'ranking', 0], ['path', …].")
    msg: str


class Invalid(Schema):
    """422: the request does not fit the schema (a list of issues), or a value was refused."""

    detail: str | list[ValidationIssue]


class RoundOut(Schema):
    id: int
    number: int
    state: str
    k: int
    overlap: int
    policy_version: int | None
    prompts: int
    counts: dict[str, int]
    progress: float
    agreement: float | None = Field(None, description="Pairwise agreement on overlapped prompts.")
    selection: str = Field("random", description="random, uncertain or audit.")
    scored_by: int | None = Field(None, description="The reward model that scored its answers.")
    audit_of: int | None = Field(None, description="The policy version an audit round checks.")


class RoundIn(Schema):
    """A round drawn from the prompt pool and written by the current policy."""

    prompts: int = Field(64, ge=1, le=10_000, description="How many prompts.")
    k: int = Field(4, ge=2, le=8, description="Answers per prompt.")
    overlap: int = Field(1, ge=1, le=10, description="Labelers per prompt.")
    source: str = Field("", max_length=100, description="Only prompts from this source.")
    tag: str = Field("", max_length=100, description="Only prompts with this tag.")
    selection: str = Field(
        "random",
        description="random, or uncertain: the prompts whose answers the newest reward model "
        "separates least, out of UNCERTAIN_POOL_FACTOR times as many.",
    )
    max_new_tokens: int = Field(SAMPLING.max_new_tokens, ge=1, le=2048)
    temperature: float = Field(SAMPLING.temperature, ge=0.0, le=2.0)
    seed: int = Field(0, ge=0, description="Which prompts, and the sampling.")


class AuditOut(Schema):
    round: int
    pairs: int
    ranked: int
    agreement: float | None = Field(
        None, description="Share of audit rankings that agree with the reward model's order."
    )
    new_preferred: float | None = Field(None, description="Share preferring the new version.")
    rm_accuracy: float | None = Field(None, description="The reward model's held-out accuracy.")
    flagged: bool = Field(..., description="Agreement below AUDIT_MIN_AGREEMENT.")


class PolicyVersionOut(Schema):
    number: int
    parent: int | None
    method: str
    is_current: bool
    metrics: dict
    created_at: datetime
    audit: AuditOut | None


class TrainIn(BaseModel):
    """`method` plus any hyperparameters of that method, at the top level."""

    model_config = ConfigDict(extra="allow")  # a plain model: ninja's Schema drops extras

    method: str = Field("ppo", description="ppo, rloo, grpo or dpo.")


class TrainOut(Schema):
    training_run_id: int


class TrainingRunOut(Schema):
    id: int
    round: int | None
    kind: str
    status: str
    progress: float
    metrics: dict
    error: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
