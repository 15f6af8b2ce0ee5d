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
