"""manage.py bootstrap_model: build the tiny local base model (cached) and make it policy v1."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from labelapp.services.training import register_base_policy

DATA_DIR = Path(settings.BASE_DIR) / "labelapp" / "data"


class Command(BaseCommand):
    help = (
        "Train a tiny tokenizer and Llama-style model on the text the project ships (pretraining, "
        "then SFT on 175 human demonstrations), save it to BASE_MODEL, register it as v1. "
        "A second run reuses the saved model. With --register-only, BASE_MODEL (a hub id or a "
        "directory) is registered as it is."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", default=settings.BASE_MODEL, help="Default: BASE_MODEL.")
        parser.add_argument("--register-only", action="store_true")
        parser.add_argument(
            "--pretrain-steps", type=int, default=None, help="Override (fewer = faster, worse)."
        )

    def handle(self, out: str, register_only: bool, pretrain_steps: int | None, **options):
        if not register_only:
            from rlhf_worker.training.bootstrap import (  # torch: only when building
                BootstrapConfig,
                bootstrap_base_model,
                load_bootstrap_corpus,
            )

            config = BootstrapConfig()
            if pretrain_steps is not None:
                config.pretrain_steps = pretrain_steps
            corpus, demonstrations = load_bootstrap_corpus(DATA_DIR)
            metrics = bootstrap_base_model(corpus, demonstrations, out, config, progress=True)
            self.stdout.write(
                f"Base model in {out}: {metrics['parameters']:,} parameters, "
                f"vocabulary {metrics['vocab_size']:,}, built in {metrics['seconds']:.0f} s "
                "(cached from now on)."
            )
        version = register_base_policy(out)
        self.stdout.write(f"Policy v{version.number} is {version.artifact_path}")
