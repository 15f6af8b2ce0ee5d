"""Settings that can be wrong are refused at start-up by Django's system checks."""

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from labelapp.checks import check_model_settings


def test_the_default_settings_pass():
    assert check_model_settings(None) == []


def test_an_unknown_generation_engine_is_refused_at_start_up(settings):
    settings.GENERATION_ENGINE = "vlm"
    (error,) = check_model_settings(None)
    assert error.id == "labelapp.E001" and "transformers, vllm" in error.hint
    with pytest.raises(SystemCheckError, match="GENERATION_ENGINE='vlm'"):
        call_command("check")


def test_no_torch_threads_is_refused(settings):
    settings.TORCH_THREADS = 0
    assert [error.id for error in check_model_settings(None)] == ["labelapp.E002"]


def test_no_training_processes_is_refused(settings):
    settings.TRAINING_PROCESSES = 0
    assert [error.id for error in check_model_settings(None)] == ["labelapp.E003"]


def test_an_accelerate_config_that_is_not_a_file_is_refused(settings, tmp_path):
    settings.ACCELERATE_CONFIG = str(tmp_path / "missing.yaml")
    assert [error.id for error in check_model_settings(None)] == ["labelapp.E004"]
    (tmp_path / "missing.yaml").write_text("distributed_type: MULTI_GPU\n")
    assert check_model_settings(None) == []
