import pytest

from labelapp.models import LABELS, Completion, Prompt, Ranking
from labelapp.services.assignment import assign_next, skip_assignment
from labelapp.services.quality import (
    flagged_completions,
    labeler_stats,
    position_bias,
    round_quality,
)
from labelapp.services.ranking import RankingSubmission, submit_ranking
from tests.conftest import make_round, make_user


def rank(user, prompt: Prompt, best_first: list[int], flags=None, ms=None) -> Ranking:
    """Submit `user`'s next task, which must be `prompt`, ranking its completions by index.

    Index i is the prompt's i-th completion by id; `flags` is {index: [flag, ...]}.
    """
    a = assign_next(user)
    assert a.prompt_id == prompt.pk
    by_index = sorted(a.order)
    label_of = {i: LABELS[a.order.index(cid)] for i, cid in enumerate(by_index)}
    submission = RankingSubmission(
        ranking=[label_of[i] for i in best_first],
        flags={label_of[i]: names for i, names in (flags or {}).items()},
        time_spent_ms=ms,
    )
    ranking, _ = submit_ranking(user, a.pk, submission)
    return ranking


def completion(prompt: Prompt, index: int) -> int:
    return Completion.objects.filter(prompt=prompt).order_by("id")[index].pk


@pytest.fixture
def three_labelers(db):
    """Three labelers on a round of overlap 3; alice skips the third prompt, carol ranks it.

    p0: alice 0123, bob 0123, carol 3210. p1: alice 0123, bob 1023, carol 0132. p2: carol 0123.
    """
    round_ = make_round(n_prompts=3, k=4, overlap=3)
    p0, p1, p2 = round_.prompts.order_by("id")
    alice, bob, carol = (make_user(name) for name in ("alice", "bob", "carol"))
    rank(alice, p0, [0, 1, 2, 3], flags={3: ["hallucination", "harmful"]}, ms=1000)
    rank(bob, p0, [0, 1, 2, 3], ms=500)
    rank(carol, p0, [3, 2, 1, 0], flags={3: ["hallucination"]}, ms=100)
    rank(alice, p1, [0, 1, 2, 3], flags={3: ["garbled"]}, ms=3000)
    null_time = rank(
        bob,
        p1,
        [1, 0, 2, 3],
        flags={2: ["harmful", "fails_instruction", "garbled", "hallucination"]},
        ms=9,
    )
    rank(carol, p1, [0, 1, 3, 2], ms=900)
    skip_assignment(alice, assign_next(alice).pk, "I can't judge this one")
    rank(carol, p2, [0, 1, 2, 3], ms=200)
    # Rankings from before time was measured have none.
    Ranking.objects.filter(pk=null_time.pk).update(time_spent_ms=None)
    return round_, (p0, p1, p2)


def test_done_skipped_and_skip_rate_per_labeler(three_labelers):
    round_, _ = three_labelers
    rows = {r["username"]: r for r in labeler_stats(round_)}
    assert [r["username"] for r in labeler_stats(round_)] == ["alice", "bob", "carol"]
    counts = {name: (r["done"], r["skipped"], r["total"]) for name, r in rows.items()}
    assert counts == {"alice": (2, 1, 3), "bob": (2, 0, 2), "carol": (3, 0, 3)}
    assert rows["alice"]["skip_rate"] == pytest.approx(1 / 3)
    assert rows["bob"]["skip_rate"] == rows["carol"]["skip_rate"] == 0.0


def test_median_time_ignores_rankings_without_a_time(three_labelers):
    round_, _ = three_labelers
    medians = {r["username"]: r["median_time_ms"] for r in labeler_stats(round_)}
    assert medians == {"alice": 2000.0, "bob": 500.0, "carol": 200.0}


def test_median_time_is_none_when_no_ranking_has_one(labeler, labeling_round):
    rank(labeler, labeling_round.prompts.order_by("id")[0], [0, 1, 2, 3])
    Ranking.objects.update(time_spent_ms=None)
    assert labeler_stats(labeling_round)[0]["median_time_ms"] is None


def test_majority_agreement_by_hand(three_labelers):
    # p0: alice's and bob's others split on every pair (none counted); carol's both disagree
    # with her on all 6. p1: alice matches 4 of 4 counted, bob 4 of 5 (0>1), carol 4 of 5 (2>3).
    round_, _ = three_labelers
    rows = {r["username"]: r for r in labeler_stats(round_)}
    got = {name: (r["majority_agreement"], r["majority_pairs"]) for name, r in rows.items()}
    assert got == {"alice": (1.0, 4), "bob": (0.8, 5), "carol": (pytest.approx(4 / 11), 11)}


def test_majority_agreement_is_none_without_overlap(labeler, labeling_round):
    rank(labeler, labeling_round.prompts.order_by("id")[0], [0, 1, 2, 3])
    row = labeler_stats(labeling_round)[0]
    assert (row["majority_agreement"], row["majority_pairs"]) == (None, 0)


def test_flags_given_counts_flag_names(three_labelers):
    round_, _ = three_labelers
    given = {r["username"]: r["flags_given"] for r in labeler_stats(round_)}
    assert given == {"alice": 3, "bob": 4, "carol": 1}


def test_all_rounds_when_no_round_is_given(labeler):
    first = make_round(n_prompts=1, overlap=1, prefix="First")
    second = make_round(n_prompts=1, overlap=1, prefix="Second")
    rank(labeler, first.prompts.get(), [0, 1, 2, 3], ms=100)
    rank(labeler, second.prompts.get(), [0, 1, 2, 3], ms=300)
    assert [(r["done"], r["median_time_ms"]) for r in labeler_stats(first)] == [(1, 100.0)]
    assert [(r["done"], r["median_time_ms"]) for r in labeler_stats()] == [(2, 200.0)]


def test_position_bias_counts_the_label_ranked_first(labeler):
    round_ = make_round(n_prompts=5, k=4, overlap=1)
    for first in "BBBA":
        a = assign_next(labeler)
        rest = [x for x in "ABCD" if x != first]
        submit_ranking(labeler, a.pk, RankingSubmission(ranking=[first, *rest]))
    skip_assignment(labeler, assign_next(labeler).pk, "not my language")
    assert position_bias(round_) == {
        "rankings": 4,
        "counts": {"A": 1, "B": 3, "C": 0, "D": 0},
        "shares": {"A": 0.25, "B": 0.75, "C": 0.0, "D": 0.0},
        "max_over_expected": 3.0,
    }


def test_position_bias_of_a_round_without_rankings(labeling_round):
    assert position_bias(labeling_round) == {
        "rankings": 0,
        "counts": {"A": 0, "B": 0, "C": 0, "D": 0},
        "shares": {"A": 0.0, "B": 0.0, "C": 0.0, "D": 0.0},
        "max_over_expected": None,
    }


def test_flagged_completions_most_labelers_then_most_flags_first(three_labelers):
    round_, (p0, p1, _) = three_labelers
    flagged = flagged_completions(round_)
    assert [(f["completion_id"], f["prompt_id"]) for f in flagged] == [
        (completion(p0, 3), p0.pk),
        (completion(p1, 2), p1.pk),
        (completion(p1, 3), p1.pk),
    ]
    top = flagged[0]
    assert top["flags"] == {"hallucination": 2, "harmful": 1}
    assert (top["flag_count"], top["labelers"]) == (3, ["alice", "carol"])
    assert (top["prompt"], top["completion"]) == (p0.text, f"answer 3 to {p0.text}")
    assert flagged[1]["flag_count"] == 4  # more flags than the top one, but one labeler
    assert [f["completion_id"] for f in flagged_completions(round_, limit=1)] == [
        top["completion_id"]
    ]


def test_flagged_completions_truncate_long_prompts(labeler):
    round_ = make_round(n_prompts=1, prefix="word " * 100)
    rank(labeler, round_.prompts.get(), [0, 1, 2, 3], flags={0: ["garbled"]})
    [item] = flagged_completions(round_)
    assert len(item["prompt"]) == 120 and item["prompt"].endswith("…")


def test_queries_stay_bounded_whatever_the_number_of_labelers(
    three_labelers, django_assert_max_num_queries
):
    round_, _ = three_labelers
    with django_assert_max_num_queries(4):
        labeler_stats(round_)
    with django_assert_max_num_queries(4):
        labeler_stats()
    with django_assert_max_num_queries(8):
        quality = round_quality(round_)
    assert quality["agreement"]["prompts"] == 2
    assert [r["username"] for r in quality["labelers"]] == ["alice", "bob", "carol"]
    assert quality["position_bias"]["rankings"] == 7
    assert len(quality["flagged"]) == 3
