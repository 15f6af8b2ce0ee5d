"""The task page's form: the same fields the API takes, for browsers with or without JS."""

from django import forms
from django.conf import settings

from labelapp.models import FLAG_CHOICES
from labelapp.services.ranking import MAX_TIME_SPENT_MS, RankingSubmission

POSITION_NAMES = ["Best", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th"]


class RankingForm(forms.Form):
    """`rank_1` (best) ... `rank_K` (worst) each pick a label; flags and metadata are optional.

    The form only parses types; whether the ranking is a permutation, and every other rule, is
    checked by services.ranking.submit_ranking, exactly as for the API.
    """

    quality = forms.TypedChoiceField(
        choices=[("", "—")] + [(str(i), str(i)) for i in range(1, 8)],
        coerce=int,
        empty_value=None,
        required=False,
        widget=forms.RadioSelect,
        label="Overall quality of the best answer (1–7, optional)",
    )
    demonstration = forms.CharField(
        required=False,
        max_length=settings.DEMONSTRATION_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 5}),
        label="Write a better answer (optional)",
    )
    time_spent_ms = forms.IntegerField(
        required=False, min_value=0, max_value=MAX_TIME_SPENT_MS, widget=forms.HiddenInput
    )
    client_submission_id = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)

    def __init__(self, *args, labels: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.labels = labels
        choices = [("", "—")] + [(label, label) for label in labels]
        for i in range(1, len(labels) + 1):
            self.fields[f"rank_{i}"] = forms.ChoiceField(
                choices=choices, required=False, label=POSITION_NAMES[i - 1]
            )
        for label in labels:
            self.fields[f"flags_{label}"] = forms.MultipleChoiceField(
                choices=FLAG_CHOICES,
                required=False,
                widget=forms.CheckboxSelectMultiple,
                label=f"Problems with {label}",
            )

    def rank_fields(self) -> list[forms.BoundField]:
        return [self[f"rank_{i}"] for i in range(1, len(self.labels) + 1)]

    def flag_field(self, label: str) -> forms.BoundField:
        return self[f"flags_{label}"]

    def submission(self) -> RankingSubmission:
        """The cleaned form as the service's input (call after is_valid())."""
        data = self.cleaned_data
        ranking = [data[f"rank_{i}"] for i in range(1, len(self.labels) + 1)]
        return RankingSubmission(
            ranking=[label for label in ranking if label],
            flags={label: data[f"flags_{label}"] for label in self.labels},
            quality=data["quality"],
            demonstration=data["demonstration"],
            time_spent_ms=data["time_spent_ms"],
            client_submission_id=data["client_submission_id"],
        )


class SkipForm(forms.Form):
    reason = forms.CharField(max_length=500, label="Why skip?")
