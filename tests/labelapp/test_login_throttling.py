"""Login throttling (django-axes): wrong passwords lock out one username from one address."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client

from labelapp.services.tokens import issue_token
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


def login(client: Client, username: str, password: str):
    return client.post(LOGIN, {"username": username, "password": password})


def fail_until_locked(client: Client, username: str) -> list[int]:
    """Wrong passwords up to the limit; the status of each answer."""
    return [
        login(client, username, "wrong").status_code for _ in range(settings.AXES_FAILURE_LIMIT)
    ]


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_the_limit_is_five_failures_and_a_fifteen_minute_cool_off():
    assert settings.AXES_FAILURE_LIMIT == 5
    cool_off = settings.AXES_COOLOFF_TIME
    assert cool_off == timedelta(minutes=15)
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
    assert settings.MIDDLEWARE[-1] == "axes.middleware.AxesMiddleware"


def test_five_wrong_passwords_lock_out_even_the_right_one(labeler):
    client = Client(REMOTE_ADDR="203.0.113.7")
    assert fail_until_locked(client, "alice") == [200, 200, 200, 200, 429]
    response = login(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert not logged_in(client)
    page = response.content.decode()
    assert "Too many failed logins" in page and "Try again in 15 minutes" in page
    assert "script-src 'self'" in response["Content-Security-Policy"]  # still our own page


def test_wrong_passwords_before_the_limit_only_show_the_form_error(labeler):
    client = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert "Wrong username or password." in login(client, "alice", "wrong").content.decode()
    assert login(client, "alice", PASSWORD).status_code == 302
    assert logged_in(client)


def test_a_successful_login_forgets_the_earlier_failures(labeler):
    client = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "alice", "wrong")
    assert login(client, "alice", PASSWORD).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "alice", "wrong")
    assert login(client, "alice", PASSWORD).status_code == 302


def test_another_user_and_the_same_user_elsewhere_are_not_locked_out(labeler, other_labeler):
    fail_until_locked(Client(REMOTE_ADDR="203.0.113.7"), "alice")
    same_address = Client(REMOTE_ADDR="203.0.113.7")
    assert login(same_address, "bob", PASSWORD).status_code == 302
    elsewhere = Client(REMOTE_ADDR="198.51.100.2")
    assert login(elsewhere, "alice", PASSWORD).status_code == 302
    assert logged_in(elsewhere)


def test_the_lockout_ends_after_the_cool_off(labeler):
    client = Client(REMOTE_ADDR="203.0.113.7")
    fail_until_locked(client, "alice")
    assert login(client, "alice", PASSWORD).status_code == 429
    past = settings.AXES_COOLOFF_TIME + timedelta(seconds=1)
    for attempt in AccessAttempt.objects.all():
        AccessAttempt.objects.filter(pk=attempt.pk).update(attempt_time=attempt.attempt_time - past)
    assert login(client, "alice", PASSWORD).status_code == 302


def test_a_locked_out_user_keeps_the_bearer_token_api_and_an_open_session(labeler, labeling_round):
    session = Client()
    session.force_login(labeler)
    fail_until_locked(Client(REMOTE_ADDR="127.0.0.1"), "alice")
    api = Client(headers={"authorization": f"Bearer {issue_token(labeler)}"})
    assert api.get("/api/v1/tasks/next").status_code == 200
    assert session.get("/label/").status_code == 200
