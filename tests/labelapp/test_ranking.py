import pytest

from labelapp.models import Comparison, Demonstration, Ranking
from labelapp.services.assignment import assign_next
from labelapp.services.errors import Conflict
from labelapp.services.ranking import RankingSubmission, expand_to_comparisons, submit_ranking


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
