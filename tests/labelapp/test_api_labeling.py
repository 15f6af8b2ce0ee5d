"""The labeler side of /api/v1, with every bad input answered 4xx and nothing changed."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from labelapp.models import Assignment, Comparison, Ranking
from labelapp.services.assignment import assign_next, skip_assignment
from labelapp.services.tokens import issue_token
from tests.conftest import db_snapshot


@pytest.fixture
def api(labeler):
    """A Bearer-token client for `labeler`."""
    return Client(headers={"authorization": f"Bearer {issue_token(labeler)}"})


@pytest.fixture
def task(api, labeling_round):
    response = api.get("/api/v1/tasks/next")
    assert response.status_code == 200
    return response.json()


def post(client, url, body, raw=False):
    data = body if raw else json.dumps(body)
    return client.post(url, data, content_type="application/json")


def rank_url(task):
    return f"/api/v1/assignments/{task['assignment_id']}/ranking"


def test_next_task_has_the_contract_shape(api, labeling_round):
    body = api.get("/api/v1/tasks/next").json()
    assert set(body) == {"assignment_id", "round", "prompt", "completions", "expires_at"}
    assert body["round"] == labeling_round.number
    assert [c["label"] for c in body["completions"]] == ["A", "B", "C", "D"]
    assignment = Assignment.objects.get(pk=body["assignment_id"])
    assert [c["id"] for c in body["completions"]] == assignment.order
    assert body["prompt"]["id"] == assignment.prompt_id


def test_next_task_is_204_when_there_is_no_work(api, db):
    response = api.get("/api/v1/tasks/next")
    assert response.status_code == 204 and response.content == b""


def test_ranking_is_201_then_the_same_body_is_200_with_the_same_id(api, task):
    body = {"ranking": ["C", "A", "D", "B"], "flags": {"A": ["hallucination"]}, "quality": 5}
    first = post(api, rank_url(task), body)
    assert first.status_code == 201
    assert first.json()["comparisons"] == 6
    again = post(api, rank_url(task), body)
    assert again.status_code == 200
    assert again.json()["ranking_id"] == first.json()["ranking_id"]
    assert Ranking.objects.count() == 1 and Comparison.objects.count() == 6


def test_a_different_body_after_submit_is_409_and_keeps_the_first(api, task):
    assert post(api, rank_url(task), {"ranking": list("CADB")}).status_code == 201
    before = db_snapshot()
    response = post(api, rank_url(task), {"ranking": list("ABCD")})
    assert response.status_code == 409
    assert "already submitted" in response.json()["detail"]
    assert db_snapshot() == before
    assert Ranking.objects.get().labels == list("CADB")


BAD_BODIES = [
    ("missing label", {"ranking": ["A", "B", "C"]}, 422, "missing D"),
    ("repeated label", {"ranking": ["A", "A", "B", "C"]}, 422, "more than once"),
    ("unknown label", {"ranking": ["A", "B", "C", "E"]}, 422, "unknown label 'E'"),
    ("too long", {"ranking": ["A", "B", "C", "D", "E"]}, 422, "unknown label"),
    ("empty", {"ranking": []}, 422, "missing A"),
    ("not a list", {"ranking": "CADB"}, 422, "list"),
    ("list of numbers", {"ranking": [1, 2, 3, 4]}, 422, "string"),
    ("no ranking", {"quality": 3}, 422, "ranking"),
    ("quality 0", {"ranking": list("ABCD"), "quality": 0}, 422, "quality"),
    ("quality 8", {"ranking": list("ABCD"), "quality": 8}, 422, "quality"),
    ("quality x", {"ranking": list("ABCD"), "quality": "x"}, 422, "quality"),
    ("negative time", {"ranking": list("ABCD"), "time_spent_ms": -1}, 422, "time_spent_ms"),
    ("unknown flag", {"ranking": list("ABCD"), "flags": {"A": ["rude"]}}, 422, "unknown flag"),
    ("flag of label E", {"ranking": list("ABCD"), "flags": {"E": []}}, 422, "unknown label"),
    (
        "demonstration too long",
        {"ranking": list("ABCD"), "demonstration": "x" * 10_001},
        422,
        "longer than",
    ),
]


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD_BODIES, ids=lambda x: x)
def test_a_bad_ranking_is_refused_and_changes_nothing(api, task, case, body, status, message):
    before = db_snapshot()
    response = post(api, rank_url(task), body)
    assert response.status_code == status, response.content
    assert message in json.dumps(response.json()["detail"])
    assert db_snapshot() == before


@pytest.mark.parametrize("raw", ["{not json", "[1, 2", "ranking=ABCD"])
def test_a_body_that_is_not_json_is_400(api, task, raw):
    before = db_snapshot()
    response = post(api, rank_url(task), raw, raw=True)
    assert response.status_code == 400
    assert "parse" in response.json()["detail"]
    assert db_snapshot() == before


def test_someone_elses_assignment_is_404(api, task, other_labeler):
    theirs = assign_next(other_labeler)
    before = db_snapshot()
    for url in (f"/api/v1/assignments/{theirs.pk}/ranking", "/api/v1/assignments/999999/ranking"):
        response = post(api, url, {"ranking": list("ABCD")})
        assert response.status_code == 404
        assert "not found" in response.json()["detail"]
    assert post(api, f"/api/v1/assignments/{theirs.pk}/skip", {"reason": "x"}).status_code == 404
    assert db_snapshot() == before


def test_an_expired_assignment_is_410(api, task):
    Assignment.objects.filter(pk=task["assignment_id"]).update(
        reserved_until=timezone.now() - timedelta(seconds=1)
    )
    before = db_snapshot()
    response = post(api, rank_url(task), {"ranking": list("ABCD")})
    assert response.status_code == 410
    assert "expired" in response.json()["detail"]
    assert db_snapshot() == before


def test_a_skipped_assignment_cannot_be_ranked(api, task, labeler):
    skip_assignment(labeler, task["assignment_id"], "off topic")
    before = db_snapshot()
    response = post(api, rank_url(task), {"ranking": list("ABCD")})
    assert response.status_code == 409
    assert "skipped" in response.json()["detail"]
    assert db_snapshot() == before


def test_skip_is_200_and_needs_a_reason(api, task):
    url = f"/api/v1/assignments/{task['assignment_id']}/skip"
    before = db_snapshot()
    assert post(api, url, {"reason": ""}).status_code == 422
    assert post(api, url, {}).status_code == 422
    assert db_snapshot() == before
    response = post(api, url, {"reason": "needs domain knowledge"})
    assert response.status_code == 200
    assert response.json() == {"assignment_id": task["assignment_id"], "state": "skipped"}
    assert post(api, rank_url(task), {"ranking": list("ABCD")}).status_code == 409


def test_not_logged_in_is_401_and_changes_nothing(task, labeling_round):
    anonymous = Client()
    before = db_snapshot()
    assert anonymous.get("/api/v1/tasks/next").status_code == 401
    assert post(anonymous, rank_url(task), {"ranking": list("ABCD")}).status_code == 401
    bad_token = Client(headers={"authorization": "Bearer not-a-token"})
    assert bad_token.get("/api/v1/tasks/next").status_code == 401
    assert db_snapshot() == before


def test_a_session_write_without_csrf_token_is_403(labeler, labeling_round):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(labeler)
    task = browser.get("/api/v1/tasks/next").json()  # reads need no token
    before = db_snapshot()
    response = post(browser, rank_url(task), {"ranking": list("ABCD")})
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert db_snapshot() == before
    # With the token the same write goes through.
    browser.get("/label/")
    token = browser.cookies["csrftoken"].value
    response = browser.post(
        rank_url(task),
        json.dumps({"ranking": list("ABCD")}),
        content_type="application/json",
        headers={"x-csrftoken": token},
    )
    assert response.status_code == 201


def test_a_user_outside_the_labelers_group_gets_403(outsider, labeling_round):
    client = Client(headers={"authorization": f"Bearer {issue_token(outsider)}"})
    assert client.get("/api/v1/tasks/next").status_code == 403
    assert Assignment.objects.filter(labeler__isnull=False).count() == 0


def test_openapi_schema_lists_the_contract_paths(client, db):
    schema = client.get("/api/v1/openapi.json").json()
    for path in (
        "/api/v1/tasks/next",
        "/api/v1/assignments/{assignment_id}/ranking",
        "/api/v1/assignments/{assignment_id}/skip",
        "/api/v1/rounds",
        "/api/v1/rounds/{round_id}",
        "/api/v1/rounds/{round_id}/train",
        "/api/v1/training-runs/{run_id}",
        "/api/v1/rounds/{round_id}/export",
    ):
        assert path in schema["paths"], path


def _statements(captured) -> int:
    """SQL statements, leaving out transaction control (BEGIN/COMMIT/SAVEPOINT)."""
    return sum(
        q["sql"].split(None, 1)[0].upper() in {"SELECT", "INSERT", "UPDATE", "DELETE"}
        for q in captured
    )


def test_the_labeler_loop_stays_within_its_query_budget(api, labeling_round):
    """The hot path of the load benchmark: each query it saves is a round trip per call."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    api.get("/api/v1/tasks/next")  # the token's last-used time is written once a minute: not here
    post(api, rank_url(api.get("/api/v1/tasks/next").json()), {"ranking": list("ABCD")})

    with CaptureQueriesContext(connection) as next_call:
        task = api.get("/api/v1/tasks/next").json()
    with CaptureQueriesContext(connection) as submit_call:
        response = post(api, rank_url(task), {"ranking": list("DCBA")})
    assert response.status_code == 201
    # next: token + roles, lock the labeler, own reservation, open rounds, free slot with its
    # prompt, completion ids, claim, completion texts. submit: token + roles, the assignment
    # locked, ranking, comparisons, assignment state.
    assert _statements(next_call.captured_queries) <= 8, next_call.captured_queries
    assert _statements(submit_call.captured_queries) <= 5, submit_call.captured_queries
