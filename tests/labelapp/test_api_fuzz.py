"""Fuzz the JSON API from its own OpenAPI schema (schemathesis): no input makes it answer 5xx.

The schema is loaded from the Django app in-process (WSGI), every operation is called with a
bounded number of generated requests as an admin and as a labeler (Bearer tokens), and every
answer must be a non-5xx that conforms to the schema the API publishes. Examples are
derandomized, so a run is the same on every machine.
"""

import re

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from labelapp.access import ADMINS, LABELERS
from labelapp.models import TrainingRun
from labelapp.services.assignment import assign_next
from labelapp.services.ranking import RankingSubmission, submit_ranking
from labelapp.services.tokens import issue_token
from labelapp.services.training import register_base_policy
from tests.conftest import make_round, make_user

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", WSGIHandler())
# The ids of rows that exist, by path parameter (set by the `token` fixture).
REAL_IDS: dict[str, list[int]] = {}


def as_int(value: object) -> int | None:
    """A generated id as an integer (the coverage phase sends them as strings), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value):
        return int(value)
    return None


@schema.hook
def map_path_parameters(context, path_parameters: dict | None) -> dict | None:
    """Point every other generated integer id at a row that exists, so that the request gets
    past the 404 into the service code; odd ones and non-integers stay as generated."""
    if not path_parameters:
        return path_parameters
    mapped = dict(path_parameters)
    for name, value in path_parameters.items():
        ids = REAL_IDS.get(name)
        number = as_int(value)
        if ids and number is not None and number % 2 == 0:
            mapped[name] = ids[(number // 2) % len(ids)]
    return mapped


@pytest.fixture
def in_test_transaction():
    """Keep the test's database connection across the app's requests, as Django's Client does.

    Django closes "old" connections at the start and end of every request; inside a test that
    would close the connection holding the test's transaction.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(db, in_test_transaction, role):
    """The role's Bearer token, and data for its calls to find."""
    round_ = make_round(n_prompts=4)
    admin, labeler, other = (
        make_user("root", ADMINS),
        make_user("alice", LABELERS),
        make_user("bob", LABELERS),
    )
    done = assign_next(other)
    submit_ranking(other, done.pk, RankingSubmission(list("BADC"), demonstration="A better one."))
    register_base_policy("/models/base")
    run = TrainingRun.objects.create(round=round_, kind="reward", status="failed", error="boom")
    users = {"admin": admin, "labeler": labeler}
    # The role's own open assignment, and someone else's submitted one.
    assignments = [assign_next(users[role]).pk, done.pk]
    REAL_IDS.update(assignment_id=assignments, round_id=[round_.pk], run_id=[run.pk])
    yield issue_token(users[role])
    REAL_IDS.clear()


@pytest.mark.parametrize("role", ["admin", "labeler"])
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_generated_request_makes_the_api_fail(case, token, role):
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
