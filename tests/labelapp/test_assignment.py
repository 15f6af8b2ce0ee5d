from datetime import timedelta

import pytest
from django.utils import timezone

from labelapp.models import Assignment, Completion
from labelapp.services.assignment import assign_next, skip_assignment
from labelapp.services.errors import Expired, InvalidInput
from labelapp.services.ranking import RankingSubmission, submit_ranking
from tests.conftest import make_round, make_user

RANK_ABCD = RankingSubmission(ranking=["A", "B", "C", "D"])


def test_next_reserves_an_assignment_with_a_shuffled_order(labeler, labeling_round):
    assignment = assign_next(labeler)
    assert assignment.state == Assignment.State.RESERVED
    assert assignment.labeler == labeler
    assert assignment.reserved_until > timezone.now()
    ids = set(
        Completion.objects.filter(prompt=assignment.prompt, round=labeling_round).values_list(
            "id", flat=True
        )
    )
    assert sorted(assignment.order) == sorted(ids)
    assert assignment.labels() == ["A", "B", "C", "D"]


def test_asking_again_gives_the_same_assignment_until_it_is_done(labeler, labeling_round):
    first = assign_next(labeler)
    assert assign_next(labeler).pk == first.pk
    submit_ranking(labeler, first.pk, RANK_ABCD)
    second = assign_next(labeler)
    assert second.pk != first.pk
    assert second.prompt_id != first.prompt_id


def test_the_order_is_shuffled_per_assignment(db):
    # 24 orders are possible; 12 labelers all seeing the same one has chance 24**-11.
    make_round(n_prompts=1, overlap=12)
    orders = {tuple(assign_next(make_user(f"l{i}", "labelers")).order) for i in range(12)}
    assert len(orders) > 1


def test_overlap_gives_each_prompt_to_that_many_labelers(db):
    round_ = make_round(n_prompts=2, overlap=2)
    users = [make_user(f"l{i}", "labelers") for i in range(5)]
    got = [assign_next(u) for u in users]
    assert got[4] is None  # 2 prompts x 2 = 4 slots
    by_prompt = {}
    for a in got[:4]:
        by_prompt.setdefault(a.prompt_id, set()).add(a.labeler_id)
    assert sorted(len(v) for v in by_prompt.values()) == [2, 2]
    assert round_progress_total(round_) == 4


def round_progress_total(round_):
    from labelapp.services.rounds import round_progress

    return round_progress(round_)["total"]


def test_a_labeler_never_gets_the_same_prompt_twice(labeler, db):
    make_round(n_prompts=2, overlap=3)
    seen = []
    while (a := assign_next(labeler)) is not None:
        seen.append(a.prompt_id)
        submit_ranking(labeler, a.pk, RANK_ABCD)
    assert len(seen) == 2
    assert len(set(seen)) == 2


def test_no_work_gives_none(labeler, db):
    assert assign_next(labeler) is None


def test_an_expired_reservation_goes_to_someone_else_and_the_late_submit_is_410(
    labeler, other_labeler, db
):
    make_round(n_prompts=1)
    mine = assign_next(labeler)
    Assignment.objects.filter(pk=mine.pk).update(
        reserved_until=timezone.now() - timedelta(seconds=1)
    )
    theirs = assign_next(other_labeler)
    assert theirs.prompt_id == mine.prompt_id and theirs.pk != mine.pk
    mine.refresh_from_db()
    assert mine.state == Assignment.State.EXPIRED
    with pytest.raises(Expired):
        submit_ranking(labeler, mine.pk, RANK_ABCD)
    _, created = submit_ranking(other_labeler, theirs.pk, RANK_ABCD)
    assert created


def test_an_expired_reservation_nobody_took_is_renewed_for_its_labeler(labeler, db):
    make_round(n_prompts=1)
    mine = assign_next(labeler)
    Assignment.objects.filter(pk=mine.pk).update(
        reserved_until=timezone.now() - timedelta(seconds=1)
    )
    again = assign_next(labeler)
    assert again.pk == mine.pk and again.order == mine.order
    assert again.reserved_until > timezone.now()


def test_skip_needs_a_reason_and_hands_the_prompt_to_someone_else(labeler, other_labeler, db):
    make_round(n_prompts=1)
    mine = assign_next(labeler)
    with pytest.raises(InvalidInput):
        skip_assignment(labeler, mine.pk, "   ")
    skip_assignment(labeler, mine.pk, "not my field")
    mine.refresh_from_db()
    assert (mine.state, mine.skip_reason) == (Assignment.State.SKIPPED, "not my field")
    assert assign_next(labeler) is None  # never the same prompt again
    theirs = assign_next(other_labeler)
    assert theirs.prompt_id == mine.prompt_id
