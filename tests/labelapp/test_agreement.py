import pytest

from labelapp.models import LABELS, Prompt, Ranking
from labelapp.services.agreement import (
    agreement_summary,
    kendall_tau,
    majority_agreement,
    pairwise_agreement,
    round_agreement,
)
from labelapp.services.assignment import assign_next
from labelapp.services.ranking import RankingSubmission, submit_ranking
from tests.conftest import make_round, make_user

IDENTICAL = ([1, 2, 3, 4], [1, 2, 3, 4])
REVERSED = ([1, 2, 3, 4], [4, 3, 2, 1])
ONE_ADJACENT_SWAP = ([1, 2, 3, 4], [1, 3, 2, 4])


def rank(user, prompt: Prompt, best_first: list[int]) -> Ranking:
    """Submit `user`'s next task, which must be `prompt`, ranking its completions by index.

    Index i is the prompt's i-th completion by id; the labels are looked up through the shuffled
    order the labeler was shown.
    """
    a = assign_next(user)
    assert a.prompt_id == prompt.pk
    by_index = sorted(a.order)
    labels = [LABELS[a.order.index(by_index[i])] for i in best_first]
    ranking, _ = submit_ranking(user, a.pk, RankingSubmission(ranking=labels))
    return ranking


@pytest.mark.parametrize(
    ("orders", "agreeing", "tau"),
    [(IDENTICAL, 6, 1.0), (REVERSED, 0, -1.0), (ONE_ADJACENT_SWAP, 5, 4 / 6)],
)
def test_agreement_and_tau_of_two_rankings_of_four(orders, agreeing, tau):
    assert pairwise_agreement(list(orders)) == (agreeing, 6)
    assert kendall_tau(*orders) == pytest.approx(tau)


def test_tau_is_over_the_items_both_rankings_share():
    # Shared 1, 2, 3: (1,2) concordant, (1,3) and (2,3) discordant -> (1 - 2) / 3.
    assert kendall_tau([1, 2, 3, 4], [3, 1, 2]) == pytest.approx(-1 / 3)


def test_tau_of_rankings_sharing_fewer_than_two_items_is_an_error():
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [2, 3])


def test_majority_agreement_leaves_out_pairs_the_others_tie_on():
    # Others split on (1,2) and (3,4): not counted. Both put 1 and 2 over 3 (own disagrees) and 4.
    assert majority_agreement([3, 1, 2, 4], [[1, 2, 4, 3], [2, 1, 3, 4]]) == (2, 4)
    assert majority_agreement([4, 3, 2, 1], [[1, 2, 3, 4], [1, 2, 3, 4]]) == (0, 6)
    assert majority_agreement([1, 2, 3, 4], []) == (0, 0)


@pytest.mark.django_db
def test_round_summary_over_three_labelers_by_hand(django_assert_num_queries):
    round_ = make_round(n_prompts=3, k=4, overlap=3)
    p0, p1, p2 = round_.prompts.order_by("id")
    alice, bob, carol = (make_user(name) for name in ("alice", "bob", "carol"))
    # p0: alice = bob, carol reversed: 6/6 (tau 1), 0/6 (-1), 0/6 (-1).
    rank(alice, p0, [0, 1, 2, 3])
    rank(bob, p0, [0, 1, 2, 3])
    rank(carol, p0, [3, 2, 1, 0])
    # p1: alice-bob 5/6 (tau 4/6), alice-carol 5/6 (4/6), bob-carol 4/6 (2/6).
    rank(alice, p1, [0, 1, 2, 3])
    rank(bob, p1, [1, 0, 2, 3])
    rank(carol, p1, [0, 1, 3, 2])
    rank(alice, p2, [3, 2, 1, 0])  # ranked once: not overlapped, not counted

    with django_assert_num_queries(1):
        summary = agreement_summary(round_)

    assert summary == {
        "prompts": 2,
        "pairs": 36,
        "agreement": pytest.approx(20 / 36),
        "kendall_tau": pytest.approx((1 - 1 - 1 + 4 / 6 + 4 / 6 + 2 / 6) / 6),
    }
    assert round_agreement(round_) == pytest.approx(20 / 36)


@pytest.mark.django_db
def test_identical_rankings_agree_fully_and_reversed_not_at_all():
    round_ = make_round(n_prompts=2, k=4, overlap=2)
    p0, p1 = round_.prompts.order_by("id")
    alice, bob = make_user("alice"), make_user("bob")
    rank(alice, p0, [2, 0, 3, 1])
    rank(bob, p0, [2, 0, 3, 1])
    assert agreement_summary(round_) == {
        "prompts": 1,
        "pairs": 6,
        "agreement": 1.0,
        "kendall_tau": 1.0,
    }
    rank(alice, p1, [2, 0, 3, 1])
    rank(bob, p1, [1, 3, 0, 2])
    assert agreement_summary(round_) == {
        "prompts": 2,
        "pairs": 12,
        "agreement": 0.5,
        "kendall_tau": 0.0,
    }


@pytest.mark.django_db
def test_a_round_without_overlap_has_no_agreement(labeler, labeling_round):
    for _ in range(2):
        a = assign_next(labeler)
        submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("ABCD")))
    assert agreement_summary(labeling_round) == {
        "prompts": 0,
        "pairs": 0,
        "agreement": None,
        "kendall_tau": None,
    }
    assert round_agreement(labeling_round) is None


def test_a_tie_against_a_direction_agrees_by_half():
    # 1 > (2 = 3) > 4 against the strict 1 > 2 > 3 > 4: five pairs agree, the pair (2, 3) by
    # half: 5.5 of 6; two identical ties agree fully.
    assert pairwise_agreement([[1, [2, 3], 4], [1, 2, 3, 4]]) == (5.5, 6)
    assert pairwise_agreement([[1, [2, 3], 4], [1, [3, 2], 4]]) == (6.0, 6)
    # (1 = 2) > 3 against 2 > 1 > 3: (1, 2) half; (1, 3) and (2, 3) agree: 2.5 of 3.
    assert pairwise_agreement([[[1, 2], 3], [2, 1, 3]]) == (2.5, 3)
    assert kendall_tau([[1, 2], 3], [2, 1, 3]) == pytest.approx(2 / 3)


def test_majority_agreement_counts_an_own_tie_as_half_and_ties_of_others_as_no_vote():
    # Others: 1 > 2 twice; a tie of 3 and 4 by one, 4 > 3 by the other: votes 4 over 3.
    others = [[1, 2, [3, 4]], [1, 2, 4, 3]]
    # Own: (1 = 2) > 3 > 4: (1, 2) half; 1 > 3, 1 > 4, 2 > 3, 2 > 4 match; 3 > 4 does not.
    assert majority_agreement([[1, 2], 3, 4], others) == (4.5, 6)


def test_the_round_summary_reads_ties_and_leaves_out_all_bad(labeler):
    round_ = make_round(n_prompts=1, overlap=3)
    (prompt,) = round_.prompts.all()
    a = assign_next(labeler)
    by_index = sorted(a.order)
    label = {cid: LABELS[a.order.index(cid)] for cid in a.order}
    ranking = [label[by_index[0]], [label[by_index[1]], label[by_index[2]]], label[by_index[3]]]
    submit_ranking(labeler, a.pk, RankingSubmission(ranking=ranking))
    rank(make_user("bob"), prompt, [0, 1, 2, 3])
    carol = make_user("carol")
    b = assign_next(carol)
    submit_ranking(carol, b.pk, RankingSubmission(all_bad=True, demonstration="Better."))
    summary = agreement_summary(round_)
    assert (summary["prompts"], summary["pairs"]) == (1, 6)
    assert summary["agreement"] == pytest.approx(5.5 / 6)
