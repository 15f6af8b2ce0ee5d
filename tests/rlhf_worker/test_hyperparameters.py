"""The web side's defaults are the worker's."""


def test_the_web_sides_system_prompt_is_the_workers():
    from django.conf import settings

    from rlhf_worker.training.format import DEFAULT_SYSTEM_PROMPT

    assert settings.SYSTEM_PROMPT == DEFAULT_SYSTEM_PROMPT
