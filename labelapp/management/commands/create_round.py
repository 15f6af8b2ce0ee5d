"""manage.py create_round: a new round whose completions the current policy generates."""

from django.core.management.base import BaseCommand, CommandError

from labelapp.services.errors import ServiceError
from labelapp.services.training import create_round_from_pool


class Command(BaseCommand):
    help = "Create a round of N prompts and queue the generation of K completions each."

    def add_arguments(self, parser):
        parser.add_argument("--prompts", type=int, default=64)
        parser.add_argument("--k", type=int, default=4)
        parser.add_argument("--overlap", type=int, default=1)
        parser.add_argument("--source", default="", help="Only prompts from this source.")
        parser.add_argument("--max-new-tokens", type=int, default=64)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--selection",
            choices=["random", "uncertain"],
            default="random",
            help="uncertain: the prompts whose answers the newest reward model separates least.",
        )

    def handle(self, prompts, k, overlap, source, max_new_tokens, seed, selection, **options):
        try:
            round_ = create_round_from_pool(
                prompts=prompts,
                k=k,
                overlap=overlap,
                sampling={"max_new_tokens": max_new_tokens, "seed": seed},
                seed=seed,
                source=source,
                selection=selection,
            )
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        run = round_.training_runs.get()
        self.stdout.write(
            f"Round {round_.number} ({selection}): {round_.prompts.count()} prompts, policy "
            f"v{round_.policy_version.number}; generation queued as training run {run.pk}."
        )
