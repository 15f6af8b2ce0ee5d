"""Shared fixtures: the users every test needs and a seeded round ready to label."""

import os
import shutil

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection

from labelapp.access import ADMINS, LABELERS
from labelapp.models import Assignment, Comparison, Completion, Demonstration, Prompt, Ranking
from labelapp.services.rounds import create_round, start_labeling

PASSWORD = "correct horse battery staple"
# Hidden repeats come at random; the tests that count tasks want none unless they ask
# (the web and worker processes the end-to-end tests start read this too).
os.environ["REPEAT_PERCENT"] = "0"


@pytest.fixture(autouse=True)
def _no_hidden_repeats(settings) -> None:
    settings.REPEAT_PERCENT = 0


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


# A real Chromium (Debian's package) driven by Playwright, for tests/browser and the console test
# in tests/e2e: one browser per test session, shared by both.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> str:
    path = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not path:
        pytest.fail("Chromium is missing: run `make browser-deps` (apt-get install chromium)")
    return path


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; Django's ORM calls made by the
    # test itself (set-up, assertions) are still plain synchronous code.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()
