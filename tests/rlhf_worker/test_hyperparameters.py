"""The web side's list of training settings matches the worker's config dataclasses."""

import dataclasses

import pytest

from labelapp.services import hyperparameters as hp
from rlhf_worker.training.dpo import DPOTrainingConfig
from rlhf_worker.training.online import OnlineRLConfig
from rlhf_worker.training.ppo import PPOConfig
from rlhf_worker.training.reward import RewardConfig
from rlhf_worker.training.sft import SFTConfig

TYPES = {"int": int, "float": float, "bool": bool}


@pytest.mark.parametrize(
    ("table", "config"),
    [
        (hp.PPO, PPOConfig),
        (hp.ONLINE, OnlineRLConfig),
        (hp.DPO, DPOTrainingConfig),
        (hp.REWARD, RewardConfig),
        (hp.SFT, SFTConfig),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_the_table_lists_every_config_field_with_its_type(table, config):
    fields = {f.name: TYPES.get(str(f.type), f.type) for f in dataclasses.fields(config)}
    assert table == fields


def test_the_web_sides_engines_and_system_prompt_are_the_workers():
    from django.conf import settings

    from labelapp.checks import GENERATION_ENGINES
    from rlhf_worker.training.format import DEFAULT_SYSTEM_PROMPT
    from rlhf_worker.training.generate import ENGINES

    assert GENERATION_ENGINES == ENGINES
    assert settings.SYSTEM_PROMPT == DEFAULT_SYSTEM_PROMPT
