"""The training chain as database state, without a worker: what each finished step leads to."""

import pytest
from django.db import IntegrityError, transaction

from labelapp.models import (
    Demonstration,
    LabelingRound,
    PolicyVersion,
    RewardModelVersion,
    TrainingRun,
)
from labelapp.services.assignment import assign_next
from labelapp.services.errors import Conflict
from labelapp.services.ranking import RankingSubmission, submit_ranking
from labelapp.services.rounds import create_round
from labelapp.services.training import (
    _queue,
    claim_run,
    complete_run,
    fail_run,
    make_current,
    register_base_policy,
    retry_run,
    start_training,
)


@pytest.fixture
def ranked_round(labeler, labeling_round):
    a = assign_next(labeler)
    submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("ABCD")))
    register_base_policy("/models/base")
    return labeling_round


def test_each_step_leads_to_the_next_once(ranked_round, admin_user):
    reward = start_training(ranked_round, "ppo", {"steps": 2}, admin_user)
    assert claim_run(reward.pk) is not None
    assert claim_run(reward.pk) is None  # a live worker holds it
    complete_run(reward, {"artifact_path": "/a/rm", "metrics": {"eval_accuracy": 0.8}})
    complete_run(reward, {"artifact_path": "/a/rm", "metrics": {}})  # a re-delivery
    assert RewardModelVersion.objects.count() == 1
    ppo = TrainingRun.objects.get(kind="ppo")
    assert ppo.reward_model == RewardModelVersion.objects.get() and ppo.after_run == reward
    assert ppo.config["hyperparameters"] == {"steps": 2}

    claim_run(ppo.pk)
    complete_run(ppo, {"artifact_path": "/a/v2", "metrics": {}})
    complete_run(ppo, {"artifact_path": "/a/v2", "metrics": {}})
    v2 = PolicyVersion.objects.get(number=2)
    assert v2.is_current and v2.parent.number == 1 and v2.artifact_path == "/a/v2"
    ranked_round.refresh_from_db()
    assert ranked_round.state == "done"
    following = LabelingRound.objects.get(number=ranked_round.number + 1)
    assert following.state == "generating" and following.policy_version == v2
    assert following.follows_round == ranked_round
    generate = TrainingRun.objects.get(kind="generate", round=following)
    assert generate.after_run == ppo

    claim_run(generate.pk)
    samples = [{"text": f"answer {i}"} for i in range(following.k)]
    outputs = [(pk, samples) for pk in following.prompts.values_list("pk", flat=True)]
    result = {"completions": outputs, "metrics": {"prompts": len(outputs)}}
    complete_run(generate, result)
    complete_run(generate, result)  # a re-delivery stores nothing twice
    following.refresh_from_db()
    stored = len(outputs) * following.k
    assert following.state == "labeling" and following.completions.count() == stored
    assert following.assignments.count() == len(outputs)
    generate.refresh_from_db()
    assert generate.metrics == {"prompts": len(outputs), "completions": stored}


def test_the_database_refuses_a_second_successor(ranked_round, admin_user):
    reward = start_training(ranked_round, "ppo", {}, admin_user)
    TrainingRun.objects.create(round=ranked_round, kind="sft", after_run=reward)
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.create(round=ranked_round, kind="ppo", after_run=reward)
    create_round([], follows_round=ranked_round)
    with pytest.raises(IntegrityError), transaction.atomic():
        create_round([], follows_round=ranked_round)


def test_demonstrations_put_sft_between_the_reward_model_and_the_method(
    ranked_round, admin_user, labeler
):
    assignment = ranked_round.assignments.get(labeler=labeler)
    Demonstration.objects.create(
        prompt=assignment.prompt, assignment=assignment, labeler=labeler, text="A better answer."
    )
    reward = start_training(ranked_round, "ppo", {}, admin_user)
    claim_run(reward.pk)
    complete_run(reward, {"artifact_path": "/a/rm", "metrics": {}})
    sft = TrainingRun.objects.get(after_run=reward)
    assert sft.kind == "sft" and sft.reward_model == RewardModelVersion.objects.get()
    claim_run(sft.pk)
    complete_run(sft, {"artifact_path": "/a/sft", "metrics": {}})
    ppo = TrainingRun.objects.get(after_run=sft)
    assert (ppo.kind, ppo.start_policy, ppo.reward_model) == ("ppo", sft, sft.reward_model)


def test_a_step_is_not_queued_without_the_links_it_needs(ranked_round):
    with pytest.raises(ValueError, match="a ppo step needs reward_model"):
        _queue("ppo", round=ranked_round)
    assert not TrainingRun.objects.exists()


def test_a_failed_step_fails_the_round_and_can_be_retried(ranked_round, admin_user):
    reward = start_training(ranked_round, "dpo", {}, admin_user)
    claim_run(reward.pk)
    fail_run(reward.pk, "Traceback: out of memory")
    ranked_round.refresh_from_db()
    assert ranked_round.state == "failed" and "out of memory" in ranked_round.error
    retry_run(reward)
    ranked_round.refresh_from_db()
    reward.refresh_from_db()
    assert (ranked_round.state, reward.status) == ("training", "queued")
    with pytest.raises(Conflict):
        retry_run(reward)


def test_rollback_makes_an_earlier_version_current(db):
    v1 = register_base_policy("/models/base")
    v2 = PolicyVersion.objects.create(number=2, parent=v1, artifact_path="/a/v2")
    make_current(v2)
    make_current(v1)
    assert list(PolicyVersion.objects.filter(is_current=True)) == [v1]


@pytest.mark.parametrize("method", ["rloo", "grpo", "dpo"])
def test_the_chosen_method_follows_the_reward_model(ranked_round, admin_user, method):
    reward = start_training(ranked_round, method, {}, admin_user)
    claim_run(reward.pk)
    complete_run(reward, {"artifact_path": "/a/rm", "metrics": {}})
    assert TrainingRun.objects.exclude(pk=reward.pk).get().kind == method
