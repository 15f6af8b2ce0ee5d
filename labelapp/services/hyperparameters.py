"""The hyperparameters a training request may set, checked before anything is queued.

Their names, types, defaults and help are the worker's config dataclasses themselves
(rlhf_worker.training.configs: plain dataclasses, no torch), so the web side and the worker share
one definition. The worker checks again when it builds its configs.
"""

import dataclasses

from labelapp.services.errors import InvalidInput
from rlhf_worker.training.configs import (
    DPOTrainingConfig,
    OnlineRLConfig,
    PPOConfig,
    RewardConfig,
    SFTConfig,
)


def settings_of(config: type) -> dict[str, type]:
    """A config dataclass's fields as {name: type}."""
    return {f.name: f.type for f in dataclasses.fields(config)}


def config_field(config: type, name: str) -> dataclasses.Field:
    """One field of a config dataclass: its default and `metadata["help"]`."""
    return next(f for f in dataclasses.fields(config) if f.name == name)


def help_text(*uses: tuple[str, type, str]) -> str:
    """The help of a setting, then its default for each use: `uses` are (who, config, field
    name); the first one's help is the text."""
    first = config_field(uses[0][1], uses[0][2])
    defaults = ", ".join(
        f"{who} {config_field(config, name).default:g}".strip() for who, config, name in uses
    )
    return f"{first.metadata['help']} Default: {defaults}."


METHOD_CONFIGS = {
    "ppo": PPOConfig,
    "rloo": OnlineRLConfig,
    "grpo": OnlineRLConfig,
    "dpo": DPOTrainingConfig,
}
SECTION_CONFIGS = {"reward": RewardConfig, "sft": SFTConfig}  # the steps before the method
METHOD_SETTINGS = {method: settings_of(c) for method, c in METHOD_CONFIGS.items()}
SECTIONS = {section: settings_of(c) for section, c in SECTION_CONFIGS.items()}


def _check(where: str, values: object, allowed: dict[str, type]) -> None:
    if not isinstance(values, dict):
        raise InvalidInput(f"{where} must be an object of settings")
    for name, value in values.items():
        kind = allowed.get(name)
        if kind is None:
            known = ", ".join(sorted(allowed))
            raise InvalidInput(f"unknown {where} setting {name!r}; known: {known}")
        # bool is an int in Python; an int is a fine float.
        ok = (
            isinstance(value, bool)
            if kind is bool
            else not isinstance(value, bool)
            and isinstance(value, (int, float) if kind is float else kind)
        )
        if not ok:
            raise InvalidInput(f"{where} setting {name} must be a {kind.__name__}")


def check_hyperparameters(method: str, hyperparameters: dict) -> None:
    """InvalidInput naming the first unknown setting or wrong type; the method is known."""
    method_settings = {k: v for k, v in hyperparameters.items() if k not in SECTIONS}
    _check(method, method_settings, METHOD_SETTINGS[method])
    for section, allowed in SECTIONS.items():
        if section in hyperparameters:
            _check(section, hyperparameters[section], allowed)
