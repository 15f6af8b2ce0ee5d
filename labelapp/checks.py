"""Configuration mistakes caught at start-up (`manage.py check`, runserver, migrate, the worker),
not first inside a worker after work was queued."""

from pathlib import Path

from django.conf import settings
from django.core.checks import Error, register

from rlhf_worker.training.configs import ENGINES as GENERATION_ENGINES


@register()
def check_model_settings(app_configs, **kwargs) -> list[Error]:
    """GENERATION_ENGINE is one the worker has; TORCH_THREADS and TRAINING_PROCESSES are at
    least 1; ACCELERATE_CONFIG, when set, is a file."""
    errors = []
    if settings.GENERATION_ENGINE not in GENERATION_ENGINES:
        errors.append(
            Error(
                f"GENERATION_ENGINE={settings.GENERATION_ENGINE!r} is not an engine the worker has",
                hint=f"use one of: {', '.join(GENERATION_ENGINES)}",
                id="labelapp.E001",
            )
        )
    if settings.TORCH_THREADS < 1:
        errors.append(
            Error(
                f"TORCH_THREADS={settings.TORCH_THREADS} must be at least 1",
                hint="unset it to use the cores the worker may run on",
                id="labelapp.E002",
            )
        )
    if settings.TRAINING_PROCESSES < 1:
        errors.append(
            Error(
                f"TRAINING_PROCESSES={settings.TRAINING_PROCESSES} must be at least 1",
                hint="1 trains in the worker's process; N launches N processes per step",
                id="labelapp.E003",
            )
        )
    if settings.ACCELERATE_CONFIG and not Path(settings.ACCELERATE_CONFIG).is_file():
        errors.append(
            Error(
                f"ACCELERATE_CONFIG={settings.ACCELERATE_CONFIG!r} is not a file",
                hint="an accelerate config (see docs/accelerate/), or unset it",
                id="labelapp.E004",
            )
        )
    return errors
