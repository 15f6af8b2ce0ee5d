"""The hyperparameters a training request may set, checked before anything is queued.

labelapp never imports the worker's config dataclasses (they live beside torch), so their field
names and types are listed here; tests/rlhf_worker/test_hyperparameters.py fails when the two
drift apart. The worker checks again when it builds its configs.
"""

from labelapp.services.errors import InvalidInput

REWARD = {
    "epochs": int,
    "batch_size": int,
    "learning_rate": float,
    "weight_decay": float,
    "max_length": int,
    "eval_fraction": float,
    "max_grad_norm": float,
    "seed": int,
    "lora_r": int,
    "lora_alpha": int,
    "top_layers": int,
    "gradient_checkpointing": bool,
}
SFT = {
    "epochs": int,
    "batch_size": int,
    "learning_rate": float,
    "weight_decay": float,
    "warmup_steps": int,
    "min_lr_ratio": float,
    "max_grad_norm": float,
    "max_length": int,
    "seed": int,
}
PPO = {
    "steps": int,
    "batch_size": int,
    "mini_batch_size": int,
    "ppo_epochs": int,
    "learning_rate": float,
    "max_grad_norm": float,
    "max_prompt_length": int,
    "max_new_tokens": int,
    "temperature": float,
    "kl_coef": float,
    "anchor_kl_coef": float,
    "normalize_rewards": bool,
    "length_penalty": float,
    "cliprange": float,
    "cliprange_value": float,
    "vf_coef": float,
    "gamma": float,
    "lam": float,
    "missing_eos_penalty": float,
    "whiten_advantages": bool,
    "reward_batch_size": int,
    "seed": int,
    "lora_r": int,
    "lora_alpha": int,
    "top_layers": int,
    "gradient_checkpointing": bool,
}
ONLINE = {  # RLOO and GRPO
    "steps": int,
    "batch_size": int,
    "num_generations": int,
    "max_new_tokens": int,
    "learning_rate": float,
    "beta": float,
    "temperature": float,
    "seed": int,
}
DPO = {
    "epochs": int,
    "batch_size": int,
    "learning_rate": float,
    "beta": float,
    "max_length": int,
    "seed": int,
}
METHOD_SETTINGS = {"ppo": PPO, "rloo": ONLINE, "grpo": ONLINE, "dpo": DPO}
SECTIONS = {"reward": REWARD, "sft": SFT}  # the steps before the method, as nested objects


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
