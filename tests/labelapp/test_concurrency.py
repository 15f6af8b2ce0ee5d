"""Many labelers at the same moment, on real PostgreSQL row locks (skip on SQLite)."""

import threading

import pytest
from django.db import connection, connections

from labelapp.models import Assignment, Comparison, Ranking
from labelapp.services.assignment import assign_next
from labelapp.services.errors import ServiceError
from labelapp.services.ranking import RankingSubmission, submit_ranking
from tests.conftest import make_round, make_user

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL=postgres://...)"
    ),
]


def run_together(functions):
    """Start all functions at once (behind a barrier); return their results or exceptions."""
    barrier = threading.Barrier(len(functions))
    results = [None] * len(functions)

    def runner(i, fn):
        try:
            barrier.wait()
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner, args=(i, fn)) for i, fn in enumerate(functions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_eight_labelers_asking_at_once_never_get_the_same_assignment():
    make_round(n_prompts=6, overlap=1)
    users = [make_user(f"l{i}", "labelers") for i in range(8)]
    results = run_together([lambda u=u: assign_next(u) for u in users])
    assert not [r for r in results if isinstance(r, Exception)], results
    given = [r for r in results if r is not None]
    assert len(given) == 6  # six slots, eight people: two get "no work"
    assert len({a.pk for a in given}) == 6
    assert len({a.prompt_id for a in given}) == 6
    rows = Assignment.objects.filter(state=Assignment.State.RESERVED)
    assert sorted(rows.values_list("labeler__username", flat=True)) == sorted(
        a.labeler.username for a in given
    )


def test_one_labeler_in_many_tabs_gets_one_assignment():
    make_round(n_prompts=6, overlap=1)
    user = make_user("tabs", "labelers")
    results = run_together([lambda: assign_next(user)] * 6)
    assert len({r.pk for r in results}) == 1
    assert Assignment.objects.filter(labeler=user).count() == 1


def test_two_simultaneous_submits_of_one_assignment_store_one_ranking():
    make_round(n_prompts=1)
    user = make_user("alice", "labelers")
    assignment = assign_next(user)
    same = RankingSubmission(ranking=list("BADC"))
    results = run_together([lambda: submit_ranking(user, assignment.pk, same)] * 4)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(created for _, created in results) == [False, False, False, True]
    assert len({ranking.pk for ranking, _ in results}) == 1
    assert Ranking.objects.count() == 1 and Comparison.objects.count() == 6


def test_two_simultaneous_different_submits_store_one_and_refuse_the_other():
    make_round(n_prompts=1)
    user = make_user("alice", "labelers")
    assignment = assign_next(user)
    results = run_together(
        [
            lambda: submit_ranking(user, assignment.pk, RankingSubmission(ranking=list("ABCD"))),
            lambda: submit_ranking(user, assignment.pk, RankingSubmission(ranking=list("DCBA"))),
        ]
    )
    refused = [r for r in results if isinstance(r, ServiceError)]
    assert len(refused) == 1 and refused[0].status == 409
    assert Ranking.objects.count() == 1 and Comparison.objects.count() == 6
