import pytest

from labelapp.models import Comparison, Demonstration, Ranking
from labelapp.services.assignment import assign_next
from labelapp.services.errors import Conflict, InvalidInput
from labelapp.services.ranking import (
    RankingSubmission,
    expand_to_comparisons,
    groups_of,
    submit_ranking,
)
from tests.conftest import make_round


def test_expand_to_comparisons_gives_all_k_choose_2_pairs_best_first():
    assert expand_to_comparisons([30, 10, 40, 20]) == [
        (30, 10), (30, 40), (30, 20), (10, 40), (10, 20), (40, 20)
    ]  # fmt: skip
    assert len(expand_to_comparisons(list(range(7)))) == 21


def test_submit_maps_labels_back_through_the_shuffled_order(labeler, labeling_round):
    a = assign_next(labeler)
    by_label = dict(zip("ABCD", a.order, strict=True))
    ranking, created = submit_ranking(
        labeler,
        a.pk,
        RankingSubmission(
            ranking=["C", "A", "D", "B"],
            flags={"B": ["hallucination", "hallucination"], "C": []},
            quality=6,
            time_spent_ms=4200,
        ),
    )
    assert created
    expected = [by_label[x] for x in "CADB"]
    assert ranking.order == expected
    assert ranking.labels == ["C", "A", "D", "B"]
    assert ranking.flags == {str(by_label["B"]): ["hallucination"]}
    assert (ranking.quality, ranking.time_spent_ms) == (6, 4200)
    pairs = set(Comparison.objects.filter(ranking=ranking).values_list("chosen", "rejected"))
    assert pairs == set(expand_to_comparisons(expected))
    a.refresh_from_db()
    assert a.state == "submitted"


def test_the_same_decision_again_returns_the_stored_ranking(labeler, labeling_round):
    a = assign_next(labeler)
    first, _ = submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("BADC")))
    again, created = submit_ranking(
        labeler, a.pk, RankingSubmission(ranking=list("BADC"), time_spent_ms=99)
    )
    assert (again.pk, created) == (first.pk, False)
    assert Ranking.objects.count() == 1 and Comparison.objects.count() == 6


def test_a_different_second_ranking_is_a_conflict(labeler, labeling_round):
    a = assign_next(labeler)
    submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("BADC")))
    with pytest.raises(Conflict):
        submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("ABCD")))
    assert Ranking.objects.get().labels == list("BADC")


def test_a_demonstration_is_stored_for_the_prompt(labeler, labeling_round):
    a = assign_next(labeler)
    submit_ranking(
        labeler, a.pk, RankingSubmission(ranking=list("ABCD"), demonstration="  A better one. ")
    )
    demo = Demonstration.objects.get()
    assert (demo.prompt_id, demo.labeler, demo.text) == (a.prompt_id, labeler, "A better one.")


def test_time_on_task_is_measured_by_the_server_when_the_client_sends_none(labeler, labeling_round):
    a = assign_next(labeler)
    ranking, _ = submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("ABCD")))
    assert ranking.time_spent_ms is not None and ranking.time_spent_ms >= 0


def test_expand_to_comparisons_pairs_only_items_of_different_tie_groups():
    # 30 > 10 = 40 > 20: the tied pair (10, 40) is no comparison.
    assert expand_to_comparisons([30, 10, 40, 20], [[10, 40]]) == [
        (30, 10), (30, 40), (30, 20), (10, 20), (40, 20)
    ]  # fmt: skip
    assert expand_to_comparisons([1, 2, 3, 4], [[1, 2], [3, 4]]) == [(1, 3), (1, 4), (2, 3), (2, 4)]
    assert groups_of([3, 1, 4, 2], [[1, 4]]) == [[3], [1, 4], [2]]


def test_a_tie_is_stored_as_a_group_and_expanded_only_across_groups(labeler, labeling_round):
    a = assign_next(labeler)
    by_label = dict(zip("ABCD", a.order, strict=True))
    ranking, _ = submit_ranking(labeler, a.pk, RankingSubmission(ranking=["C", ["D", "A"], "B"]))
    c, a_, d, b = (by_label[x] for x in "CADB")
    assert ranking.order == [c, a_, d, b]  # the group's labels sorted: A before D
    assert ranking.tied == [[a_, d]]
    assert ranking.labels == ["C", "A", "D", "B"]
    pairs = set(Comparison.objects.filter(ranking=ranking).values_list("chosen", "rejected"))
    assert pairs == {(c, a_), (c, d), (c, b), (a_, b), (d, b)}


def test_a_tie_in_another_label_order_is_the_same_decision(labeler, labeling_round):
    a = assign_next(labeler)
    first, _ = submit_ranking(labeler, a.pk, RankingSubmission(ranking=["C", ["D", "A"], "B"]))
    again, created = submit_ranking(
        labeler, a.pk, RankingSubmission(ranking=["C", ["A", "D"], "B"])
    )
    assert (again.pk, created) == (first.pk, False)
    with pytest.raises(Conflict):  # a strict order is another decision
        submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("CADB")))


def test_single_label_groups_are_a_strict_order_with_the_hash_of_a_plain_list(
    labeler, labeling_round
):
    a = assign_next(labeler)
    first, _ = submit_ranking(labeler, a.pk, RankingSubmission(ranking=[["B"], ["A"], "D", "C"]))
    assert first.tied == [] and Comparison.objects.count() == 6
    _, created = submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("BADC")))
    assert not created


def test_all_bad_stores_no_comparisons_and_the_better_answer(labeler, labeling_round):
    a = assign_next(labeler)
    ranking, created = submit_ranking(
        labeler,
        a.pk,
        RankingSubmission(
            all_bad=True, demonstration=" Mine is better. ", flags={"B": ["harmful"]}
        ),
    )
    assert created and ranking.all_bad
    assert (ranking.order, ranking.labels, ranking.tied) == ([], [], [])
    assert Comparison.objects.count() == 0
    assert Demonstration.objects.get().text == "Mine is better."
    assert ranking.flags == {str(dict(zip("ABCD", a.order, strict=True))["B"]): ["harmful"]}
    a.refresh_from_db()
    assert a.state == "submitted"
    with pytest.raises(Conflict):  # all bad, then a ranking: another decision
        submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("ABCD")))


@pytest.mark.parametrize(
    "ranking", [[["A", "B"]], [["B", "A"]]], ids=["tie of both", "tie of both, reversed"]
)
def test_a_tie_of_both_answers_of_a_k2_task_is_refused_and_nothing_is_stored(labeler, ranking):
    make_round(k=2)
    a = assign_next(labeler)
    with pytest.raises(InvalidInput, match="compares nothing"):
        submit_ranking(labeler, a.pk, RankingSubmission(ranking=ranking))
    assert Ranking.objects.count() == 0 and Comparison.objects.count() == 0
