"""The labeler's hot path is hand-written SQL (labelapp/services/sql.py): what it hands back must
be what the ORM reads from the row, on SQLite and on PostgreSQL (the suite runs on both)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from labelapp.models import ApiToken, Assignment, LabelingRound, Ranking
from labelapp.services import sql
from labelapp.services.assignment import assign_next, own_assignment_for_update
from labelapp.services.ranking import RankingSubmission, submit_ranking
from labelapp.services.tokens import LAST_USED_RESOLUTION, issue_token, user_for_token
from tests.conftest import make_user

ASSIGNMENT_FIELDS = ["id", "round_id", "prompt_id", "labeler_id", "state", "order"]
TIMES = ["reserved_at", "reserved_until"]


def as_stored(instance, fields):
    return {name: getattr(instance, name) for name in fields}


def close(a, b) -> bool:
    """Equal to the microsecond, or to the millisecond where a database keeps no more."""
    return abs(a - b) < timedelta(milliseconds=1)


def test_a_claimed_assignment_is_the_row_the_database_holds(labeler, labeling_round):
    claimed = assign_next(labeler)
    stored = Assignment.objects.get(pk=claimed.pk)
    assert as_stored(claimed, ASSIGNMENT_FIELDS) == as_stored(stored, ASSIGNMENT_FIELDS)
    for name in TIMES:
        assert close(getattr(claimed, name), getattr(stored, name)), name
    assert claimed.round == labeling_round and claimed.round.number == labeling_round.number
    assert claimed.prompt.text == stored.prompt.text


def test_a_running_reservation_read_back_is_the_row_the_database_holds(labeler, labeling_round):
    first = assign_next(labeler)
    again = assign_next(labeler)  # read by _active, not made by the claim
    stored = Assignment.objects.get(pk=first.pk)
    assert as_stored(again, ASSIGNMENT_FIELDS) == as_stored(stored, ASSIGNMENT_FIELDS)
    for name in TIMES:
        assert getattr(again, name) == getattr(stored, name), name
        assert getattr(again, name).tzinfo is not None


def test_fields_the_sql_did_not_read_are_loaded_on_access_not_left_empty(labeler, labeling_round):
    claimed = assign_next(labeler)
    assert claimed.get_deferred_fields() >= {"created_at", "skip_reason"}
    with CaptureQueriesContext(connection) as queries:
        created_at = claimed.created_at
    assert len(queries) == 1
    assert created_at == Assignment.objects.get(pk=claimed.pk).created_at is not None


def test_saving_an_instance_read_by_hand_writes_only_what_was_changed(labeler, labeling_round):
    locked = own_assignment_for_update(labeler, assign_next(labeler).pk)
    created_at = Assignment.objects.get(pk=locked.pk).created_at
    locked.skip_reason = "checked"
    locked.save()
    stored = Assignment.objects.get(pk=locked.pk)
    assert (stored.skip_reason, stored.created_at) == ("checked", created_at)


def test_a_stored_ranking_is_the_row_the_database_holds(labeler, labeling_round):
    assignment = assign_next(labeler)
    submission = RankingSubmission(list("CADB"), flags={"B": ["garbled"]}, quality=6)
    ranking, created = submit_ranking(labeler, assignment.pk, submission)
    stored = Ranking.objects.get(pk=ranking.pk)
    fields = ["assignment_id", "labeler_id", "order", "labels", "flags", "quality",
              "time_spent_ms", "payload_hash", "client_submission_id"]  # fmt: skip
    assert created and as_stored(ranking, fields) == as_stored(stored, fields)
    assert ranking.flags == {str(assignment.order[1]): ["garbled"]}
    assert close(ranking.created_at, stored.created_at)
    assert Assignment.objects.get(pk=assignment.pk).state == Assignment.State.SUBMITTED
    pairs = set(stored.comparisons.values_list("chosen_id", "rejected_id"))
    c, a, d, b = (assignment.order[i] for i in (2, 0, 3, 1))
    assert pairs == {(c, a), (c, d), (c, b), (a, d), (a, b), (d, b)}


def test_a_token_gives_its_user_with_the_roles_read_in_the_same_statement(db):
    labeler = make_user("tok-labeler", "labelers")
    admin = make_user("tok-admin", "admins")
    for user, roles in [(labeler, (False, True)), (admin, (True, False))]:
        raw = issue_token(user)
        with CaptureQueriesContext(connection) as queries:
            found = user_for_token(raw)
        assert (found.pk, found.username, found.is_active) == (user.pk, user.username, True)
        assert (found._roles["admins"], found._roles["labelers"]) == roles
        assert len(queries) == 2  # the lookup, and the first use noted on the token
        with CaptureQueriesContext(connection) as queries:
            user_for_token(raw)
        assert len(queries) == 1  # last used less than LAST_USED_RESOLUTION ago: no write


def test_a_token_notes_its_use_once_per_resolution(db):
    user = make_user("tok-use", "labelers")
    raw = issue_token(user)
    user_for_token(raw)
    token = ApiToken.objects.get(user=user)
    long_ago = timezone.now() - LAST_USED_RESOLUTION - timedelta(seconds=1)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=long_ago)
    user_for_token(raw)
    assert ApiToken.objects.get(pk=token.pk).last_used_at > long_ago


def test_an_unknown_token_or_an_inactive_user_finds_nobody(db):
    user = make_user("tok-gone", "labelers")
    raw = issue_token(user)
    assert user_for_token(raw + "x") is None
    user.is_active = False
    user.save()
    assert user_for_token(raw) is None


def test_an_instance_of_a_field_the_model_lacks_is_refused(db):
    with pytest.raises(TypeError, match="not fields of LabelingRound"):
        sql.instance(LabelingRound, id=1, numbr=2)
