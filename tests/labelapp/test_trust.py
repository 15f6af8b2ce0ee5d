"""Trust in each labeler: hidden repeats, gold tasks, and the trust score, by hand-made rankings."""

import io
import json

import pytest

from labelapp.models import LABELS, Assignment, Comparison, Completion, LabelingRound, Ranking
from labelapp.services.agreement import agreement_summary
from labelapp.services.assignment import assign_next, skip_assignment
from labelapp.services.errors import Conflict, InvalidInput
from labelapp.services.exports import rankings_as_jsonl, training_rankings
from labelapp.services.gold import add_gold_tasks, gold_prompts_available, mark_gold
from labelapp.services.imports import import_pairs
from labelapp.services.quality import labeler_stats, trust_by_labeler
from labelapp.services.ranking import RankingSubmission, reshown, submit_ranking
from labelapp.services.trust import trust_score
from tests.conftest import db_snapshot, make_round, make_user


def submit_by_text(user, assignment: Assignment, best_first: list[str]) -> Ranking:
    """Rank the assignment's answers by the given texts, best first (labels looked up)."""
    texts = dict(Completion.objects.filter(pk__in=assignment.order).values_list("id", "text"))
    letter = {texts[cid]: LABELS[i] for i, cid in enumerate(assignment.order)}
    ranking, _ = submit_ranking(
        user, assignment.pk, RankingSubmission(ranking=[letter[t] for t in best_first])
    )
    return ranking


def texts_of(round_, prompt_id) -> list[str]:
    return list(
        Completion.objects.filter(round=round_, prompt_id=prompt_id)
        .order_by("id")
        .values_list("text", flat=True)
    )


def stats_of(username: str, round_=None) -> dict:
    return next(row for row in labeler_stats(round_) if row["username"] == username)


# --- the score ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agreeing", "pairs", "prior", "trust"),
    [
        (0, 0, 12, 1.0),  # no evidence: full trust
        (50, 100, 12, 12 / 112),  # chance level: skill 0, only the prior is left
        (90, 100, 12, (80 + 12) / 112),
        (10, 100, 12, 12 / 112),  # contrary: floored at 0, not below
        (6, 6, 0, 1.0),
        (4.5, 6, 0, 0.5),
    ],
)
def test_trust_score_by_hand(agreeing, pairs, prior, trust):
    assert trust_score(agreeing, pairs, prior) == pytest.approx(trust)


@pytest.mark.parametrize(("agreeing", "pairs"), [(-1, 4), (5, 4), (1, -2)])
def test_trust_score_refuses_impossible_counts(agreeing, pairs):
    with pytest.raises(ValueError):
        trust_score(agreeing, pairs, 12)


def test_reshown_never_keeps_an_answer_under_its_letter():
    for order in ([1, 2], [1, 2, 3], [5, 6, 7, 8]):
        for _ in range(200):
            again = reshown(order)
            assert sorted(again) == sorted(order)
            assert all(a != b for a, b in zip(again, order, strict=True))
    with pytest.raises(ValueError):
        reshown([1])


# --- hidden repeats ----------------------------------------------------------------------


@pytest.fixture
def repeats_on(settings):
    settings.REPEAT_PERCENT = 100
    settings.REPEAT_DELAY_SECONDS = 0


def test_a_repeat_comes_back_to_the_same_labeler_in_another_order_and_trains_nothing(
    repeats_on, db
):
    round_ = make_round(n_prompts=1, overlap=2)
    alice, bob = make_user("alice"), make_user("bob")
    first = assign_next(alice)
    texts = texts_of(round_, first.prompt_id)
    submit_by_text(alice, first, texts)

    again = assign_next(alice)
    assert again.repeat_of_id == first.pk and again.prompt_id == first.prompt_id
    assert sorted(again.order) == sorted(first.order)
    assert all(a != b for a, b in zip(again.order, first.order, strict=True))
    # Bob gets the prompt's other slot, never alice's repeat; then only his own repeat.
    theirs = assign_next(bob)
    assert theirs.repeat_of_id is None and theirs.pk != again.pk
    submit_by_text(bob, theirs, texts)
    assert assign_next(bob).repeat_of_id == theirs.pk

    repeat = submit_by_text(alice, again, texts)
    assert not Comparison.objects.filter(ranking=repeat).exists()
    assert Comparison.objects.count() == 2 * 6  # alice's and bob's rankings, not the repeat
    assert assign_next(alice) is None  # a repeat is never repeated
    assert len(training_rankings(round_.number)) == 2
    # Agreement between labelers: alice against bob only, not against herself.
    assert agreement_summary(round_)["pairs"] == 6
    lines = [line for line in rankings_as_jsonl(round_) if '"repeat_of": null' not in line]
    assert len(lines) == 1 and f'"repeat_of": {first.ranking.pk}' in lines[0]


def test_a_repeat_waits_for_its_delay_unless_nothing_else_is_left(repeats_on, settings, db):
    settings.REPEAT_DELAY_SECONDS = 3600
    round_ = make_round(n_prompts=2)
    alice = make_user("alice")
    first = assign_next(alice)
    submit_by_text(alice, first, texts_of(round_, first.prompt_id))
    settings.REPEAT_PERCENT = 0
    second = assign_next(alice)
    assert second.repeat_of_id is None and second.prompt_id != first.prompt_id  # not due yet
    submit_by_text(alice, second, texts_of(round_, second.prompt_id))
    assert assign_next(alice).repeat_of_id == first.pk  # nothing else is left


def test_a_skipped_repeat_makes_no_new_slot(repeats_on, db):
    round_ = make_round(n_prompts=1)
    alice = make_user("alice")
    first = assign_next(alice)
    submit_by_text(alice, first, texts_of(round_, first.prompt_id))
    again = assign_next(alice)
    skip_assignment(alice, again.pk, "seen it")
    assert Assignment.objects.filter(round=round_).count() == 2
    assert assign_next(make_user("bob")) is None


def test_self_consistency_and_same_letter_first_from_hand_made_repeats(repeats_on, db):
    round_ = make_round(n_prompts=2, overlap=2)
    careful, biased = make_user("careful"), make_user("biased")
    for user in (careful, biased):
        for _ in range(2):
            first, again = assign_next(user), None
            if user is careful:
                submit_by_text(user, first, texts_of(round_, first.prompt_id))
                again = assign_next(user)
                # The same order but one adjacent swap: 5 of 6 pairs agree, same best answer.
                t = texts_of(round_, again.prompt_id)
                submit_by_text(user, again, [t[0], t[2], t[1], t[3]])
            else:
                # Presses A B C D whatever is shown: the same letter first, another answer.
                submit_ranking(user, first.pk, RankingSubmission(ranking=list("ABCD")))
                again = assign_next(user)
                submit_ranking(user, again.pk, RankingSubmission(ranking=list("ABCD")))
            assert again.repeat_of_id == first.pk
    c = stats_of("careful")
    assert (c["repeats"], c["self_agreement"], c["self_pairs"]) == (2, 5 / 6, 12)
    assert c["same_letter_first"] == 0.0
    b = stats_of("biased")
    assert (b["repeats"], b["same_letter_first"]) == (2, 1.0)


# --- gold --------------------------------------------------------------------------------


@pytest.fixture
def gold_round(db) -> LabelingRound:
    """Round 1: gina ranked each prompt's answers in id order; both rankings marked gold."""
    round_ = make_round(n_prompts=2, prefix="Gold")
    gina = make_user("gina")
    for _ in range(2):
        task = assign_next(gina)
        submit_by_text(gina, task, texts_of(round_, task.prompt_id))
    assert mark_gold(round_, None) == 2
    return round_


def test_gold_tasks_copy_the_answers_and_measure_labelers_by_text(gold_round, db):
    round_ = make_round(n_prompts=1, prefix="Plain")
    assert gold_prompts_available(round_) == 2
    assert add_gold_tasks(round_, 5) == 2
    assert gold_prompts_available(round_) == 0
    assert Completion.objects.filter(round=round_, source="gold").count() == 8
    alice = make_user("alice")
    gold_texts = {
        p: texts_of(gold_round, p) for p in gold_round.prompts.values_list("pk", flat=True)
    }
    agreeing = 0
    while (task := assign_next(alice)) is not None:
        t = gold_texts.get(task.prompt_id) or texts_of(round_, task.prompt_id)
        if task.prompt_id in gold_texts and agreeing == 0:
            order, agreeing = t, 6  # agrees with gold on all 6 pairs
        elif task.prompt_id in gold_texts:
            order = list(reversed(t))  # against gold on all 6
        else:
            order = t
        submit_by_text(alice, task, order)
    a = stats_of("alice", round_)
    assert (a["gold_agreement"], a["gold_pairs"]) == (0.5, 12)
    # Pooled: 6 of 12 agree, skill 0, so only the prior's 12 pairs of full trust are left.
    assert a["trust"] == pytest.approx(12 / 24)
    assert trust_by_labeler()[a["labeler_id"]] == pytest.approx(12 / 24)
    # Gina is not measured against her own gold.
    assert stats_of("gina")["gold_pairs"] == 0


def test_marking_gold_refuses_what_is_not_the_rounds_and_changes_nothing(gold_round, db):
    other = make_round(n_prompts=1, prefix="Other")
    alice = make_user("alice")
    task = assign_next(alice)
    mine = submit_by_text(alice, task, texts_of(other, task.prompt_id))
    gold_ids = list(Ranking.objects.filter(gold=True).values_list("pk", flat=True))
    before = sorted(Ranking.objects.values_list("pk", "gold"))
    with pytest.raises(InvalidInput, match=str(mine.pk)):
        mark_gold(gold_round, [gold_ids[0], mine.pk])  # mine is of another round
    with pytest.raises(InvalidInput):
        mark_gold(gold_round, [])
    assert sorted(Ranking.objects.values_list("pk", "gold")) == before
    assert mark_gold(gold_round, [gold_ids[0]], gold=False) == 1


@pytest.mark.parametrize("count", [0, -1, 201, True, "3"])
def test_gold_tasks_refuse_a_bad_count(gold_round, count, db):
    round_ = make_round(n_prompts=1, prefix="Plain")
    before = db_snapshot()
    with pytest.raises(InvalidInput):
        add_gold_tasks(round_, count)
    assert db_snapshot() == before


def test_gold_tasks_need_a_labeling_round_and_gold_to_add(gold_round, db):
    with pytest.raises(Conflict, match="no gold"):
        add_gold_tasks(gold_round, 1)  # its gold prompts are already in it
    round_ = make_round(n_prompts=1, prefix="Plain")
    LabelingRound.objects.filter(pk=round_.pk).update(state=LabelingRound.State.TRAINING)
    with pytest.raises(Conflict, match="training"):
        add_gold_tasks(round_, 1)


def test_imported_pairs_as_gold_tasks_measure_a_labeler(admin_user, db):
    rows = [
        {"prompt": f"Imported {i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(3)
    ]
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    imported = import_pairs("pairs.jsonl", io.BytesIO(data), user=admin_user).round
    assert mark_gold(imported, None) == 3
    round_ = make_round(n_prompts=1, prefix="Plain")
    assert add_gold_tasks(round_, 3) == 3
    alice = make_user("alice")
    wrong = 0
    while (task := assign_next(alice)) is not None:
        texts = texts_of(round_, task.prompt_id)
        if texts[0].startswith("good") and not wrong:
            submit_by_text(alice, task, list(reversed(texts)))  # prefers the rejected answer
            wrong = 1
        elif texts[0].startswith("good"):
            assert len(task.order) == 2  # a pair: two answers, A and B
            submit_by_text(alice, task, texts)
        else:
            submit_by_text(alice, task, texts)
    a = stats_of("alice", round_)
    assert (a["gold_agreement"], a["gold_pairs"]) == (2 / 3, 3)
    assert a["trust"] == pytest.approx((2 * 2 - 3 + 12) / (3 + 12))
