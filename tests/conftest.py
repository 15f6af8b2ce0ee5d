"""Shared fixtures: the users every test needs and a seeded round ready to label."""

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection

from labelapp.access import ADMINS, LABELERS
from labelapp.models import Assignment, Comparison, Completion, Demonstration, Prompt, Ranking
from labelapp.services.rounds import create_round, start_labeling

PASSWORD = "correct horse battery staple"


def make_user(username: str, group: str | None = None) -> User:
    user = User.objects.create_user(username, password=PASSWORD)
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def make_round(n_prompts: int = 3, k: int = 4, overlap: int = 1, prefix: str = "Prompt"):
    """A round in `labeling` with `n_prompts` prompts of K completions each."""
    prompts = [Prompt.objects.create(text=f"{prefix} {i}: say something") for i in range(n_prompts)]
    round_ = create_round(prompts, k=k, overlap=overlap)
    Completion.objects.bulk_create(
        Completion(prompt=p, round=round_, text=f"answer {j} to {p.text}", source="test")
        for p in prompts
        for j in range(k)
    )
    start_labeling(round_)
    return round_


def db_snapshot() -> dict:
    """Counts that a refused request must leave unchanged."""
    return {
        "rankings": Ranking.objects.count(),
        "comparisons": Comparison.objects.count(),
        "demonstrations": Demonstration.objects.count(),
        "assignments": sorted(Assignment.objects.values_list("id", "state", "labeler_id")),
    }


@pytest.fixture
def labeler(db) -> User:
    return make_user("alice", LABELERS)


@pytest.fixture
def other_labeler(db) -> User:
    return make_user("bob", LABELERS)


@pytest.fixture
def admin_user(db) -> User:
    return make_user("root", ADMINS)


@pytest.fixture
def outsider(db) -> User:
    """Logged in, but in no group."""
    return make_user("mallory")


@pytest.fixture
def labeling_round(db):
    return make_round()


@pytest.fixture
def on_postgres() -> bool:
    return connection.vendor == "postgresql"
