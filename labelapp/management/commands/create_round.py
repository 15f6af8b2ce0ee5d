"""manage.py create_round: a new round whose completions the current policy generates."""

import random

from django.core.management.base import BaseCommand, CommandError

from labelapp.models import PolicyVersion, Prompt
from labelapp.services.rounds import create_round
from labelapp.services.training import start_generation


class Command(BaseCommand):
    help = "Create a round of N prompts and queue the generation of K completions each."

    def add_arguments(self, parser):
        parser.add_argument("--prompts", type=int, default=64)
        parser.add_argument("--k", type=int, default=4)
        parser.add_argument("--overlap", type=int, default=1)
        parser.add_argument("--source", default="", help="Only prompts from this source.")
        parser.add_argument("--max-new-tokens", type=int, default=64)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, prompts, k, overlap, source, max_new_tokens, seed, **options):
        policy = PolicyVersion.objects.filter(is_current=True).first()
        if policy is None:
            raise CommandError("no current policy version: run `manage.py bootstrap_model` first")
        pool = Prompt.objects.filter(held_out=False)
        if source:
            pool = pool.filter(source=source)
        ids = sorted(pool.values_list("id", flat=True))
        if not ids:
            raise CommandError("no prompts to choose from")
        chosen = random.Random(seed).sample(ids, min(prompts, len(ids)))  # noqa: S311
        sampling = {"max_new_tokens": max_new_tokens, "seed": seed}
        round_ = create_round(
            list(Prompt.objects.filter(id__in=chosen)),
            k=k,
            overlap=overlap,
            policy_version=policy,
            config={"sampling": sampling},
        )
        run = start_generation(round_, sampling)
        self.stdout.write(
            f"Round {round_.number}: {len(chosen)} prompts, policy v{policy.number}; "
            f"generation queued as training run {run.pk}."
        )
