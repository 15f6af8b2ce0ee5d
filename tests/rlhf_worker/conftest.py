"""Fixtures of the ML tests."""

from tests.model_fixtures import corpus, tiny_model_dir, tiny_tokenizer  # noqa: F401
