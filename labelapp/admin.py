"""Django admin for the raw data. Rankings and comparisons are read-only: they are evidence."""

from django.contrib import admin, messages

from labelapp import models
from labelapp.services.errors import ServiceError
from labelapp.services.training import make_current, retry_run, start_training


@admin.register(models.Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("id", "short_text", "source", "held_out", "created_at")
    list_filter = ("source", "held_out")
    search_fields = ("text", "external_id")
    ordering = ("-id",)  # a stable order for the paginated list

    @admin.display(description="text")
    def short_text(self, obj: models.Prompt) -> str:
        return obj.text[:80]


@admin.register(models.PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    list_display = ("number", "parent", "method", "is_current", "created_at")
    readonly_fields = ("is_current",)  # changed only by the action below
    actions = ["make_current_version"]

    @admin.action(description="Make this version current (rollback)")
    def make_current_version(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one version.", messages.ERROR)
            return
        version = make_current(queryset.get())
        self.message_user(request, f"v{version.number} is now the current policy.")


@admin.register(models.RewardModelVersion)
class RewardModelVersionAdmin(admin.ModelAdmin):
    list_display = ("number", "round", "artifact_path", "created_at")


@admin.register(models.LabelingRound)
class LabelingRoundAdmin(admin.ModelAdmin):
    list_display = (
        "number",
        "state",
        "k",
        "overlap",
        "policy_version",
        "follows_round",
        "created_at",
    )
    list_filter = ("state",)
    # state: only services.rounds.transition moves it; follows_round: the chain's link
    readonly_fields = ("state", "failed_from", "error", "follows_round")
    filter_horizontal = ("prompts",)
    actions = ["train_with_ppo", "train_with_dpo"]

    def _train(self, request, queryset, method: str) -> None:
        for round_ in queryset:
            try:
                run = start_training(round_, method, {}, request.user)
                self.message_user(request, f"Round {round_.number}: {method} run {run.pk} queued.")
            except ServiceError as exc:
                self.message_user(request, f"Round {round_.number}: {exc.detail}", messages.ERROR)

    @admin.action(description="Train with PPO (reward model, then PPO, then the next round)")
    def train_with_ppo(self, request, queryset):
        self._train(request, queryset, "ppo")

    @admin.action(description="Train with DPO (then the next round)")
    def train_with_dpo(self, request, queryset):
        self._train(request, queryset, "dpo")


@admin.register(models.Completion)
class CompletionAdmin(admin.ModelAdmin):
    list_display = ("id", "prompt", "round", "policy_version", "source")
    list_filter = ("round", "source")
    raw_id_fields = ("prompt",)


@admin.register(models.Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("id", "round", "prompt", "labeler", "state", "reserved_until")
    list_filter = ("state", "round")
    raw_id_fields = ("prompt", "labeler")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never edited by hand."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ComparisonInline(admin.TabularInline):
    model = models.Comparison
    extra = 0
    can_delete = False
    readonly_fields = ("chosen", "rejected")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(models.Ranking)
class RankingAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "assignment",
        "labeler",
        "labels",
        "quality",
        "time_spent_ms",
        "created_at",
    )
    list_filter = ("assignment__round",)
    inlines = [ComparisonInline]


@admin.register(models.Comparison)
class ComparisonAdmin(ReadOnlyAdmin):
    list_display = ("id", "ranking", "chosen", "rejected")


@admin.register(models.Demonstration)
class DemonstrationAdmin(admin.ModelAdmin):
    list_display = ("id", "prompt", "labeler", "created_at")
    raw_id_fields = ("prompt", "assignment")


@admin.register(models.TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "round",
        "kind",
        "after_run",
        "status",
        "progress",
        "attempts",
        "created_at",
    )
    list_filter = ("status", "kind")
    readonly_fields = ("after_run", "reward_model", "start_policy")  # the chain's links
    actions = ["retry"]

    @admin.action(description="Retry the failed step")
    def retry(self, request, queryset):
        for run in queryset:
            try:
                retry_run(run)
                self.message_user(request, f"Run {run.pk} queued again.")
            except ServiceError as exc:
                self.message_user(request, exc.detail, messages.ERROR)


@admin.register(models.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "name", "created_at", "last_used_at")
    readonly_fields = ("key_hash",)
