"""manage.py seed_demo: demo users, the shipped prompts, and a first round ready to label."""

import json
import random
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from labelapp.access import ADMINS, LABELERS
from labelapp.models import Completion, LabelingRound, Prompt, text_hash
from labelapp.services.rounds import create_round, start_labeling

DATA = Path(__file__).resolve().parents[2] / "data" / "self_instruct_user_oriented.jsonl"
SOURCE = "self-instruct/user-oriented"
USERS = [("admin", ADMINS), ("labeler1", LABELERS), ("labeler2", LABELERS)]


def load_rows(path: Path = DATA) -> list[dict]:
    """The shipped instructions with their model answers."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def pick_answers(row: dict, k: int, rng: random.Random) -> list[tuple[str, str]]:
    """K of the row's model answers, non-empty and distinct: [(model, text), ...]."""
    seen: set[str] = set()
    usable = []
    for model, text in sorted(row["completions"].items()):
        if text.strip() and text.strip() not in seen:
            seen.add(text.strip())
            usable.append((model, text))
    return rng.sample(usable, k) if len(usable) >= k else []


class Command(BaseCommand):
    help = "Create demo users (printing their passwords) and a first round from shipped data."

    def add_arguments(self, parser):
        parser.add_argument("--prompts", type=int, default=252, help="Prompts in round 1.")
        parser.add_argument("--k", type=int, default=4, help="Answers per prompt.")
        parser.add_argument("--overlap", type=int, default=1, help="Labelers per prompt.")
        parser.add_argument("--seed", type=int, default=0, help="Which answers are picked.")

    @transaction.atomic
    def handle(self, prompts: int, k: int, overlap: int, seed: int, **options):
        logins = [self._user(name, group) for name, group in USERS]
        if LabelingRound.objects.exists():
            self.stdout.write("Rounds exist already; no new round created.")
        else:
            round_ = self._first_round(prompts, k, overlap, seed)
            self.stdout.write(
                f"Round {round_.number}: {round_.prompts.count()} prompts x {k} answers, "
                f"state {round_.state}."
            )
        self.stdout.write("Logins (passwords are new on every run):")
        for name, password in logins:
            self.stdout.write(f"  {name:10s} {password}")

    def _user(self, username: str, group: str) -> tuple[str, str]:
        user, _ = get_user_model().objects.get_or_create(username=username)
        password = secrets.token_urlsafe(9)
        user.set_password(password)
        user.is_staff = user.is_superuser = group == ADMINS
        user.save()
        user.groups.add(Group.objects.get(name=group))
        return username, password

    def _first_round(self, n: int, k: int, overlap: int, seed: int) -> LabelingRound:
        rng = random.Random(seed)  # noqa: S311 (reproducible choice, not security)
        chosen = []
        for row in load_rows():
            prompt = Prompt.objects.filter(text_hash=text_hash(row["prompt"])).first()
            if prompt is None:
                prompt = Prompt.objects.create(
                    text=row["prompt"], source=SOURCE, external_id=row["id"]
                )
            answers = pick_answers(row, k, rng)
            if answers:  # a few rows have fewer than K distinct non-empty answers
                chosen.append((prompt, answers))
        chosen = chosen[:n]
        prompts = [prompt for prompt, _ in chosen]
        round_ = create_round(prompts, k=k, overlap=overlap, config={"source": SOURCE})
        Completion.objects.bulk_create(
            Completion(prompt=prompt, round=round_, text=text, source=f"self-instruct:{model}")
            for prompt, answers in chosen
            for model, text in answers
        )
        start_labeling(round_)
        return round_
