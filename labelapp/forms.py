"""The task page's form: the same fields the API takes, for browsers with or without JS."""

from django import forms
from django.conf import settings

from labelapp.models import FLAG_CHOICES
from labelapp.services.hyperparameters import config_field, help_text
from labelapp.services.ranking import MAX_TIME_SPENT_MS, RankingSubmission
from rlhf_worker.training.configs import (
    DPOTrainingConfig,
    OnlineRLConfig,
    PPOConfig,
    RewardConfig,
    SamplingConfig,
)

POSITION_NAMES = ["Best", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th"]


class RankingForm(forms.Form):
    """`rank_1` (best) ... `rank_K` (worst) each pick a label; `tie_2` ... `tie_K` tie a position
    with the one above; the "All bad" button (`all_bad`) sends no ranking, only a better answer.
    Flags and metadata are optional.

    The form only parses types and builds the ranking (tie groups as lists); whether it is a
    permutation, and every other rule, is checked by services.ranking.submit_ranking, exactly as
    for the API.
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
        label="Write a better answer (optional; required for all bad)",
    )
    # Sent by the "All bad" submit button, not rendered as a field.
    all_bad = forms.BooleanField(required=False)
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
            if i > 1:  # no tie_1: nothing is above the best
                self.fields[f"tie_{i}"] = forms.BooleanField(
                    required=False, label="tied with the one above"
                )
        for label in labels:
            self.fields[f"flags_{label}"] = forms.MultipleChoiceField(
                choices=FLAG_CHOICES,
                required=False,
                widget=forms.CheckboxSelectMultiple,
                label=f"Problems with {label}",
            )

    def rank_rows(self) -> list[tuple[forms.BoundField, forms.BoundField | None]]:
        """Each position's select with its tie checkbox (None for the best)."""
        return [
            (self[f"rank_{i}"], self[f"tie_{i}"] if i > 1 else None)
            for i in range(1, len(self.labels) + 1)
        ]

    def flag_field(self, label: str) -> forms.BoundField:
        return self[f"flags_{label}"]

    def clean(self) -> dict:
        """Add `ranking`: the picked labels best -> worst, a position whose tie box is checked
        joining the group above (["C", ["A", "D"], "B"]); empty when all bad."""
        data = super().clean()
        groups: list[list[str]] = []
        for i in range(1, len(self.labels) + 1):
            label = data.get(f"rank_{i}")
            if not label:
                continue  # the service names what is missing
            if data.get(f"tie_{i}") and groups:
                groups[-1].append(label)
            else:
                groups.append([label])
        data["ranking"] = (
            [] if data.get("all_bad") else [g[0] if len(g) == 1 else g for g in groups]
        )
        return data

    def submission(self) -> RankingSubmission:
        """The cleaned form as the service's input (call after is_valid())."""
        data = self.cleaned_data
        return RankingSubmission(
            ranking=data["ranking"],
            all_bad=data["all_bad"],
            flags={label: data[f"flags_{label}"] for label in self.labels},
            quality=data["quality"],
            demonstration=data["demonstration"],
            time_spent_ms=data["time_spent_ms"],
            client_submission_id=data["client_submission_id"],
        )


class SkipForm(forms.Form):
    reason = forms.CharField(max_length=500, label="Why skip?")


# The admins' console.


class RoundForm(forms.Form):
    """A new round: which prompts, how many answers and labelers, how to sample."""

    prompts = forms.IntegerField(min_value=1, max_value=10_000, initial=64, help_text="How many.")
    source = forms.ChoiceField(required=False, help_text="Only prompts from this source.")
    tag = forms.CharField(required=False, max_length=100, help_text="Only prompts with this tag.")
    k = forms.IntegerField(
        min_value=2, max_value=8, initial=4, label="K", help_text="Answers per prompt."
    )
    overlap = forms.IntegerField(
        min_value=1,
        max_value=10,
        initial=1,
        help_text="Labelers per prompt (2+ to measure agreement).",
    )
    labelers = forms.ModelMultipleChoiceField(
        queryset=None, required=False, help_text="Nobody chosen: every labeler."
    )
    selection = forms.ChoiceField(
        choices=[
            ("random", "Random prompts"),
            ("uncertain", "Where the reward model is least sure"),
        ],
        initial="random",
        help_text=f"Least sure: {settings.UNCERTAIN_POOL_FACTOR}× as many prompts are answered, "
        "the newest reward model scores the answers, and the round keeps the prompts whose "
        "answers it separates least, those first. Needs a trained reward model.",
    )
    max_new_tokens = forms.IntegerField(
        min_value=1,
        max_value=2048,
        initial=SamplingConfig.max_new_tokens,
        help_text=config_field(SamplingConfig, "max_new_tokens").metadata["help"],
    )
    temperature = forms.FloatField(
        min_value=0.0,
        max_value=2.0,
        initial=SamplingConfig.temperature,
        help_text=config_field(SamplingConfig, "temperature").metadata["help"],
    )
    seed = forms.IntegerField(min_value=0, initial=0, help_text="Which prompts, and the sampling.")

    def __init__(self, *args, sources: list[str], labelers, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = [("", "All sources")] + [(s, s) for s in sources]
        self.fields["labelers"].queryset = labelers


class TrainForm(forms.Form):
    """Train a round: the method and its main hyperparameters (blank = the method's default)."""

    method = forms.ChoiceField(
        choices=[("ppo", "PPO"), ("rloo", "RLOO"), ("grpo", "GRPO"), ("dpo", "DPO")],
        help_text="PPO, RLOO and GRPO optimise against the new reward model; DPO learns from "
        "the comparisons directly.",
    )
    # Help texts and defaults are the worker's config fields' own (rlhf_worker.training.configs).
    steps = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=100_000,
        help_text=help_text(("PPO", PPOConfig, "steps"), ("RLOO/GRPO", OnlineRLConfig, "steps")),
    )
    learning_rate = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        help_text=help_text(
            ("PPO", PPOConfig, "learning_rate"),
            ("RLOO/GRPO", OnlineRLConfig, "learning_rate"),
            ("DPO", DPOTrainingConfig, "learning_rate"),
        ),
    )
    kl = forms.FloatField(
        required=False,
        min_value=0,
        max_value=10,
        label="KL coefficient",
        help_text=help_text(
            ("PPO kl_coef", PPOConfig, "kl_coef"),
            ("RLOO/GRPO beta", OnlineRLConfig, "beta"),
            ("DPO beta", DPOTrainingConfig, "beta"),
        ),
    )
    max_new_tokens = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=2048,
        help_text=help_text(
            ("PPO", PPOConfig, "max_new_tokens"), ("RLOO/GRPO", OnlineRLConfig, "max_new_tokens")
        ),
    )
    reward_epochs = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=100,
        help_text=help_text(("", RewardConfig, "epochs")),
    )
    reward_trust_weighting = forms.BooleanField(
        required=False,
        label="Weight rankings by trust",
        help_text=config_field(RewardConfig, "trust_weighting").metadata["help"] + " Default: off.",
    )

    def hyperparameters(self) -> dict:
        """The filled-in values under the names the worker's configs use."""
        data = self.cleaned_data
        method = data["method"]
        names = {"learning_rate": "learning_rate", "kl": "kl_coef" if method == "ppo" else "beta"}
        if method != "dpo":
            names |= {"steps": "steps", "max_new_tokens": "max_new_tokens"}
        hp = {names[k]: data[k] for k in names if data.get(k) is not None}
        reward = {}
        if data.get("reward_epochs") is not None:
            reward["epochs"] = data["reward_epochs"]
        if data.get("reward_trust_weighting"):
            reward["trust_weighting"] = True
        if reward and method != "dpo":
            hp["reward"] = reward
        return hp


class CompareForm(forms.Form):
    """Two policy versions side by side on held-out prompts."""

    first = forms.ModelChoiceField(queryset=None, label="Version A")
    second = forms.ModelChoiceField(queryset=None, label="Version B")
    prompts = forms.IntegerField(min_value=1, max_value=256, initial=16)

    def __init__(self, *args, versions, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["first"].queryset = self.fields["second"].queryset = versions


class ImportForm(forms.Form):
    """A prompts file (JSONL or CSV) or a preference-pairs file (JSONL)."""

    kind = forms.ChoiceField(
        choices=[("prompts", "Prompts (.jsonl or .csv)"), ("pairs", "Preference pairs (.jsonl)")]
    )
    file = forms.FileField()
    source = forms.CharField(
        required=False, max_length=100, help_text="A name for where it came from."
    )
    skip_invalid = forms.BooleanField(
        required=False, help_text="Import the valid rows and report the others."
    )
