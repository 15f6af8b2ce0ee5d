"""Training settings: checked against the worker's config dataclasses, shown with their help."""

import dataclasses
import subprocess
import sys

import pytest

from labelapp.forms import TrainForm
from labelapp.services.errors import InvalidInput
from labelapp.services.hyperparameters import check_hyperparameters, config_field
from rlhf_worker.training.configs import OnlineRLConfig, PPOConfig, RewardConfig


def test_every_field_of_a_config_may_be_set():
    ppo = {f.name: f.default for f in dataclasses.fields(PPOConfig)}
    reward = {f.name: f.default for f in dataclasses.fields(RewardConfig)}
    check_hyperparameters("ppo", {**ppo, "reward": reward})


@pytest.mark.parametrize(
    ("method", "hyperparameters", "message"),
    [
        ("ppo", {"beta": 0.1}, "unknown ppo setting 'beta'"),  # RLOO's and DPO's name
        ("grpo", {"steps": "8"}, "grpo setting steps must be a int"),
        ("ppo", {"normalize_rewards": 1}, "must be a bool"),
        ("dpo", {"learning_rate": True}, "must be a float"),
        ("ppo", {"reward": {"epoch": 1}}, "unknown reward setting 'epoch'"),
        ("ppo", {"sft": []}, "sft must be an object"),
        (
            "ppo",
            {"reward": {"trust_weighting": "yes"}},
            "reward setting trust_weighting must be a bool",
        ),
        (
            "rloo",
            {"reward": {"trust_weighting": 1}},
            "reward setting trust_weighting must be a bool",
        ),
        ("ppo", {"trust_weighting": True}, "unknown ppo setting 'trust_weighting'"),  # reward's
    ],
)
def test_a_wrong_setting_is_refused_by_name(method, hyperparameters, message):
    with pytest.raises(InvalidInput, match=message):
        check_hyperparameters(method, hyperparameters)


def test_the_train_forms_help_is_the_configs_own():
    fields = TrainForm.base_fields
    assert fields["kl"].help_text.startswith(config_field(PPOConfig, "kl_coef").metadata["help"])
    assert f"PPO kl_coef {PPOConfig.kl_coef:g}" in fields["kl"].help_text
    assert f"RLOO/GRPO {OnlineRLConfig.learning_rate:g}" in fields["learning_rate"].help_text
    assert f"Default: {RewardConfig.epochs}." in fields["reward_epochs"].help_text


@pytest.mark.parametrize(
    ("data", "hyperparameters"),
    [
        ({"method": "ppo", "reward_trust_weighting": "on"}, {"reward": {"trust_weighting": True}}),
        ({"method": "ppo"}, {}),  # unchecked: the config's default, off
        (
            {"method": "grpo", "reward_epochs": 3, "reward_trust_weighting": "on"},
            {"reward": {"epochs": 3, "trust_weighting": True}},
        ),
    ],
)
def test_the_train_forms_trust_box_sets_the_reward_models_trust_weighting(data, hyperparameters):
    form = TrainForm(data)
    assert form.is_valid(), form.errors
    assert form.hyperparameters() == hyperparameters
    check_hyperparameters(data["method"], form.hyperparameters())
    help_text = form.fields["reward_trust_weighting"].help_text
    assert help_text.startswith(config_field(RewardConfig, "trust_weighting").metadata["help"])
    assert RewardConfig().trust_weighting is False


def test_the_web_side_reads_the_configs_without_torch():
    code = "import django; django.setup(); import labelapp.forms, labelapp.urls, sys; "
    code += "print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"DJANGO_SETTINGS_MODULE": "labelapp.settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "False"
