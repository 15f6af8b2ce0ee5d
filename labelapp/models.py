"""The data model of the labeling loop (see ARCHITECTURE.md, "Data model").

State changes and multi-row writes live in labelapp/services/, not here: these classes hold
fields, constraints and small read-only helpers.
"""

import hashlib
import string

from django.conf import settings
from django.db import models
from django.db.models import Q

LABELS = string.ascii_uppercase  # completion labels shown to labelers: A, B, C, D, ...

# InstructGPT's labeling metadata (Ouyang et al. 2022, appendix B), as per-completion flags.
FLAG_CHOICES = [
    ("fails_instruction", "Fails to follow the instruction"),
    ("hallucination", "Makes up facts"),
    ("harmful", "Harmful or unsafe advice"),
    ("sexual_or_violent", "Sexual or violent content"),
    ("denigrates", "Denigrates a protected class"),
    ("inappropriate", "Inappropriate for an assistant"),
    ("garbled", "Garbled or not language"),
]
FLAG_NAMES = frozenset(name for name, _ in FLAG_CHOICES)


def text_hash(text: str) -> str:
    """The de-duplication key of a prompt: sha256 of its text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Prompt(models.Model):
    text = models.TextField()
    text_hash = models.CharField(max_length=64, unique=True, editable=False)
    source = models.CharField(max_length=100, blank=True, help_text="Where the prompt came from.")
    external_id = models.CharField(max_length=200, blank=True)
    tags = models.JSONField(default=list, blank=True)
    held_out = models.BooleanField(default=False, help_text="Kept out of training, for evaluation.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Prompt {self.pk}: {self.text[:60]}"

    def save(self, *args, **kwargs):
        self.text_hash = text_hash(self.text)
        super().save(*args, **kwargs)


class PolicyVersion(models.Model):
    number = models.PositiveIntegerField(unique=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT)
    artifact_path = models.CharField(max_length=500)
    created_by_run = models.ForeignKey(
        "TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    method = models.CharField(max_length=20, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    is_current = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["is_current"], condition=Q(is_current=True), name="one_current_policy"
            )
        ]

    def __str__(self) -> str:
        return f"v{self.number}"


class RewardModelVersion(models.Model):
    number = models.PositiveIntegerField(unique=True)
    round = models.ForeignKey("LabelingRound", null=True, blank=True, on_delete=models.SET_NULL)
    artifact_path = models.CharField(max_length=500)
    created_by_run = models.ForeignKey(
        "TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"RM {self.number}"


class LabelingRound(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft"
        GENERATING = "generating"
        LABELING = "labeling"
        TRAINING = "training"
        DONE = "done"
        FAILED = "failed"

    class Selection(models.TextChoices):
        RANDOM = "random", "random prompts"
        UNCERTAIN = "uncertain", "prompts the reward model separates least"
        AUDIT = "audit", "a new version's top-reward answers against its parent's"

    number = models.PositiveIntegerField(unique=True)
    # Change only through labelapp.services.rounds.transition(), which checks the move.
    state = models.CharField(max_length=20, choices=State.choices, default=State.DRAFT)
    failed_from = models.CharField(
        max_length=20, blank=True, help_text="The state a failed round retries into."
    )
    error = models.TextField(blank=True)
    k = models.PositiveSmallIntegerField(default=4, help_text="Completions per prompt.")
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Labelers per prompt.")
    policy_version = models.ForeignKey(
        PolicyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="rounds"
    )
    prompts = models.ManyToManyField(Prompt, related_name="rounds", blank=True)
    labelers = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        related_name="+",
        blank=True,
        help_text="Who may label this round; nobody chosen means every labeler.",
    )
    follows_round = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="next_round",
        help_text="The round whose training wrote this one (unique: one next round each).",
    )
    selection = models.CharField(
        max_length=20,
        choices=Selection.choices,
        default=Selection.RANDOM,
        help_text="How the round's prompts and answers were chosen.",
    )
    scored_by = models.ForeignKey(
        RewardModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The reward model that scored the round's answers (Completion.reward).",
    )
    audit_of = models.OneToOneField(
        PolicyVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="audit_round",
        help_text="The version whose top-reward answers this round checks (one audit each).",
    )
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Round {self.number} ({self.state})"


class Completion(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="completions")
    round = models.ForeignKey(LabelingRound, on_delete=models.CASCADE, related_name="completions")
    text = models.TextField()
    policy_version = models.ForeignKey(
        PolicyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="completions"
    )
    source = models.CharField(
        max_length=100, blank=True, help_text="For imported answers: the external source's name."
    )
    sampling_params = models.JSONField(default=dict, blank=True)
    reward = models.FloatField(
        null=True, blank=True, help_text="The score its round's reward model (scored_by) gave it."
    )
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["round", "prompt"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(policy_version__isnull=False) | ~Q(source=""),
                name="completion_has_an_author",
            )
        ]

    def __str__(self) -> str:
        return f"Completion {self.pk} of prompt {self.prompt_id}"


class Assignment(models.Model):
    """One labeler's turn at one prompt of a round.

    A round starts with `overlap` OPEN slots per prompt. A labeler claims a slot (RESERVED until
    `reserved_until`), then SUBMITTED or SKIPPED it. A reservation that runs out is EXPIRED when
    someone else claims the prompt, and a new row is made for them, so the late submit of the
    first labeler answers 410 rather than writing over the second one's work.
    """

    class State(models.TextChoices):
        OPEN = "open"
        RESERVED = "reserved"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"
        EXPIRED = "expired"

    round = models.ForeignKey(LabelingRound, on_delete=models.CASCADE, related_name="assignments")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="assignments")
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="assignments",
    )
    state = models.CharField(max_length=20, choices=State.choices, default=State.OPEN)
    # Completion ids in the order shown, so order[0] is "A": shuffled per assignment so that
    # position is not confounded with quality.
    order = models.JSONField(default=list, blank=True)
    reserved_at = models.DateTimeField(null=True, blank=True)
    reserved_until = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=500, blank=True)
    # A hidden repeat: the same answers for the same labeler again, in another A-D order, to
    # measure their self-consistency and position bias. Its ranking is not expanded into
    # comparisons and nothing trains on it.
    repeat_of = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="repeat"
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["round", "state"]),
            models.Index(fields=["labeler", "state"]),
            # assign_next's walk to the first free slot of a round, in id order.
            models.Index(
                fields=["round", "id"],
                condition=Q(state__in=["open", "reserved"]),
                name="assignment_free_slots",
            ),
            # The labeler's free hidden repeats (few, usually none), looked up on every call.
            models.Index(
                fields=["labeler", "round"],
                condition=Q(repeat_of__isnull=False, state__in=["open", "reserved"]),
                name="assignment_free_repeats",
            ),
        ]
        constraints = [
            # A labeler never gets the same prompt of a round twice (NULL labelers are distinct),
            # but for one hidden repeat (repeat_of is unique).
            models.UniqueConstraint(
                fields=["round", "prompt", "labeler"],
                condition=Q(repeat_of__isnull=True),
                name="one_assignment_per_labeler_prompt",
            )
        ]

    def __str__(self) -> str:
        return f"Assignment {self.pk} ({self.state})"

    def labels(self) -> list[str]:
        """The labels shown for this assignment: A, B, C, D for K=4."""
        return list(LABELS[: len(self.order)])


class Ranking(models.Model):
    assignment = models.OneToOneField(Assignment, on_delete=models.PROTECT, related_name="ranking")
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rankings"
    )
    # Completion ids best -> worst, and the labels the labeler pressed (for position-bias checks).
    order = models.JSONField()
    labels = models.JSONField()
    # Groups of completion ids the labeler ranked equally good (2+ each, contiguous in order);
    # empty for a strict order. Comparisons are only between groups.
    tied = models.JSONField(default=list, blank=True)
    # Every answer unacceptable: no order and no comparisons; the labeler's demonstration (a
    # better answer) is required instead, and feeds SFT.
    all_bad = models.BooleanField(default=False)
    # Marked by an admin as the right answer (an imported pair, a reviewed ranking): labelers who
    # rank the same answers are measured against it.
    gold = models.BooleanField(default=False)
    flags = models.JSONField(default=dict, blank=True, help_text="{completion id: [flag, ...]}")
    quality = models.PositiveSmallIntegerField(null=True, blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    # sha256 of the decision (ranking, flags, quality, demonstration): a re-submit of the same
    # decision is acknowledged again, a different one is a conflict.
    payload_hash = models.CharField(max_length=64)
    client_submission_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Ranking {self.pk} of assignment {self.assignment_id}"


class Comparison(models.Model):
    ranking = models.ForeignKey(Ranking, on_delete=models.CASCADE, related_name="comparisons")
    chosen = models.ForeignKey(Completion, on_delete=models.PROTECT, related_name="+")
    rejected = models.ForeignKey(Completion, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["ranking", "chosen", "rejected"], name="one_comparison_per_pair"
            ),
            models.CheckConstraint(
                condition=~Q(chosen=models.F("rejected")), name="comparison_of_two_completions"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.chosen_id} > {self.rejected_id}"


class Demonstration(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="demonstrations")
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="demonstrations"
    )
    assignment = models.OneToOneField(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="demonstration"
    )
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Demonstration {self.pk} for prompt {self.prompt_id}"


class TrainingRun(models.Model):
    class Kind(models.TextChoices):
        SFT = "sft"
        REWARD = "reward"
        PPO = "ppo"
        RLOO = "rloo"
        GRPO = "grpo"
        DPO = "dpo"
        GENERATE = "generate"
        COMPARE = "compare"  # two policy versions answer the same held-out prompts

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    round = models.ForeignKey(
        LabelingRound,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="training_runs",
        help_text="Empty for work outside a round's chain (comparisons).",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The chain's links (see labelapp.services.training.CHAIN): the step this one follows
    # (unique: a re-delivered step cannot queue a second successor), the reward model it trains
    # against and the SFT step whose model it starts from.
    after_run = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="next_run",
        help_text="The step whose result queued this one.",
    )
    reward_model = models.ForeignKey(
        RewardModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The reward model this step trains against.",
    )
    start_policy = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The SFT step whose model this step starts from (empty: the round's policy).",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="When the step was last sent to the workers."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.kind} run {self.pk} ({self.status})"


class ApiToken(models.Model):
    """A Bearer token for API clients; only its sha256 is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Token {self.pk} of {self.user}"
