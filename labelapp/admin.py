"""Django admin for the raw data. Rankings and comparisons are read-only: they are evidence."""

from django.contrib import admin

from labelapp import models


@admin.register(models.Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("id", "short_text", "source", "held_out", "created_at")
    list_filter = ("source", "held_out")
    search_fields = ("text", "external_id")

    @admin.display(description="text")
    def short_text(self, obj: models.Prompt) -> str:
        return obj.text[:80]


@admin.register(models.PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    list_display = ("number", "parent", "method", "is_current", "created_at")
    readonly_fields = ("is_current",)  # change it with the rollback action (closed-loop work)


@admin.register(models.RewardModelVersion)
class RewardModelVersionAdmin(admin.ModelAdmin):
    list_display = ("number", "round", "artifact_path", "created_at")


@admin.register(models.LabelingRound)
class LabelingRoundAdmin(admin.ModelAdmin):
    list_display = ("number", "state", "k", "overlap", "policy_version", "created_at")
    list_filter = ("state",)
    readonly_fields = ("state", "failed_from", "error")  # only services.rounds.transition moves it
    filter_horizontal = ("prompts",)


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
    list_display = ("id", "round", "kind", "status", "progress", "created_at")
    list_filter = ("status", "kind")


@admin.register(models.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "name", "created_at", "last_used_at")
    readonly_fields = ("key_hash",)
