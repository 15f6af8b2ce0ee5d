"""Uncertainty-first rounds and audits: the choices on hand-made scores, then through the chain."""

import pytest
from django.test import override_settings

from labelapp.models import Completion, LabelingRound, PolicyVersion, Prompt, RewardModelVersion
from labelapp.services.assignment import assign_next
from labelapp.services.errors import Conflict, InvalidInput
from labelapp.services.quality import audit_results
from labelapp.services.ranking import RankingSubmission, submit_ranking
from labelapp.services.selection import (
    Answer,
    agreement_with_rewards,
    audit_pairs,
    excess_rewards,
    least_separated,
    mean_gap,
    repetition,
)
from labelapp.services.training import (
    claim_run,
    complete_run,
    create_round_from_pool,
    register_base_policy,
    start_training,
)


def test_mean_gap_is_the_mean_pairwise_distance():
    assert mean_gap([1.0, 2.0, 4.0]) == pytest.approx((1 + 3 + 2) / 3)
    assert mean_gap([5.0]) == 0.0


def test_least_separated_keeps_the_closest_answers_and_puts_repeats_last():
    answers = {
        1: [("a", 0.0), ("b", 3.0)],  # gap 3
        2: [("a", 1.0), ("b", 1.1)],  # gap 0.1: the least separated
        3: [("same", 0.0), ("same", 0.0)],  # gap 0, but nobody can tell them apart
        4: [("a", 0.0), ("b", 0.5)],  # gap 0.5
    }
    chosen = least_separated(answers, 3)
    assert [pid for pid, _ in chosen] == [2, 4, 1]
    assert chosen[0][1] == pytest.approx(0.1)


def test_excess_reward_is_what_length_and_repetition_do_not_explain():
    assert repetition("one two three one two three") == pytest.approx(1 - 3 / 4)
    assert repetition("short") == 0.0
    texts = ["x" * n for n in (10, 20, 30, 40, 50)]
    rewards = [n / 10 for n in (10, 20, 30, 40, 50)]
    rewards[2] += 5.0  # liked far beyond its length
    excess = excess_rewards(texts, rewards)
    assert max(range(5), key=excess.__getitem__) == 2
    assert sum(excess) == pytest.approx(0.0, abs=1e-9)  # least squares with an intercept


def test_audit_pairs_take_top_rewards_then_excess_one_per_prompt():
    new = [
        Answer(1, 10, "a long answer here", 9.0),  # the top reward
        Answer(2, 10, "another", 8.5),  # same prompt: never a second pair
        Answer(3, 11, "b", 1.0),
        Answer(4, 12, "c " * 40, 5.0),
        Answer(5, 13, "d", 7.0),  # no parent answer: left out
    ]
    old = [Answer(100 + p, p, f"old {p}", 0.0) for p in (10, 11, 12)]
    pairs = audit_pairs(new, old, 2)
    assert [(p.new.id, p.old.prompt_id, p.reason) for p in pairs][0] == (1, 10, "top reward")
    assert len(pairs) == 2 and pairs[1].reason == "reward beyond length and repetition"
    assert len({p.new.prompt_id for p in pairs}) == 2
    assert all(p.new.prompt_id == p.old.prompt_id for p in pairs)
    assert audit_pairs(new, [], 4) == []


def test_agreement_with_rewards_counts_reward_ties_half():
    rewards = {1: 2.0, 2: 1.0, 3: 1.0}
    assert agreement_with_rewards([(1, 2), (2, 1), (2, 3)], rewards) == pytest.approx(1.5 / 3)
    with pytest.raises(ValueError):
        agreement_with_rewards([], rewards)


# --- Through the chain ------------------------------------------------------------------------


def _prompts(n: int) -> list[Prompt]:
    return [Prompt.objects.create(text=f"Question {i}?") for i in range(n)]


def _finish_generation(round_: LabelingRound, rewards_of, previous=None) -> None:
    """What the worker's generate step returns: K samples per prompt, scored when the round
    has a reward model."""
    run = round_.training_runs.get(kind="generate")
    claim_run(run.pk)
    completions = []
    for pk in round_.prompts.order_by("pk").values_list("pk", flat=True):
        samples = [{"text": f"answer {j} of {pk}"} for j in range(round_.k)]
        if round_.scored_by_id is not None:
            for j, sample in enumerate(samples):
                sample["reward"] = rewards_of(pk, j)
        completions.append((pk, samples))
    result = {"completions": completions, "metrics": {}}
    if previous is not None:
        result["previous_rewards"] = previous
    complete_run(run, result)
    complete_run(run, result)  # a re-delivery changes nothing
    round_.refresh_from_db()


@pytest.fixture
def reward_model(db):
    register_base_policy("/models/base")
    return RewardModelVersion.objects.create(number=1, artifact_path="/a/rm1")


def test_an_uncertain_round_needs_a_reward_model(db):
    register_base_policy("/models/base")
    _prompts(4)
    with pytest.raises(Conflict, match="needs a reward model"):
        create_round_from_pool(prompts=2, k=2, overlap=1, sampling={}, selection="uncertain")
    with pytest.raises(InvalidInput):
        create_round_from_pool(prompts=2, k=2, overlap=1, sampling={}, selection="audit")
    assert not LabelingRound.objects.exists()


@override_settings(UNCERTAIN_POOL_FACTOR=3)
def test_an_uncertain_round_keeps_the_least_separated_prompts_first(reward_model, labeler):
    prompts = _prompts(9)
    round_ = create_round_from_pool(prompts=2, k=2, overlap=1, sampling={}, selection="uncertain")
    assert round_.scored_by == reward_model and round_.prompts.count() == 6  # the pool: 3 × 2
    pool = sorted(round_.prompts.values_list("pk", flat=True))
    gap = {pk: 1.0 + i for i, pk in enumerate(pool)}
    gap[pool[4]], gap[pool[2]] = 0.01, 0.2  # the two the model separates least
    _finish_generation(round_, lambda pk, j: j * gap[pk])

    round_.refresh_from_db()
    assert round_.state == "labeling"
    assert sorted(round_.prompts.values_list("pk", flat=True)) == sorted([pool[4], pool[2]])
    assert round_.config["selection"]["chosen"] == [pool[4], pool[2]]
    assert round_.config["selection"]["gaps"][str(pool[0])] == pytest.approx(1.0)
    assert Completion.objects.filter(round=round_).count() == 4
    assert sorted(round_.completions.values_list("reward", flat=True)) == pytest.approx(
        [0.0, 0.0, 0.01, 0.2]
    )
    assert assign_next(labeler).prompt_id == pool[4]  # the least separated goes out first
    assert len(prompts) - len(pool) == 3  # never drawn


def _trained(round_: LabelingRound, labeler, admin_user) -> LabelingRound:
    """Rank every task of `round_` A > B > ..., train it with PPO; returns the next round."""
    while (task := assign_next(labeler)) is not None:
        submit_ranking(labeler, task.pk, RankingSubmission(ranking=task.labels()))
    reward = start_training(round_, "ppo", {}, admin_user)
    claim_run(reward.pk)
    complete_run(reward, {"artifact_path": f"/a/rm-{reward.pk}", "metrics": {"eval_accuracy": 0.9}})
    ppo = reward.next_run
    claim_run(ppo.pk)
    complete_run(ppo, {"artifact_path": f"/a/policy-{ppo.pk}", "metrics": {}})
    return LabelingRound.objects.get(follows_round=round_)


def _second_round(labeler, admin_user, n_prompts: int = 2) -> tuple[LabelingRound, LabelingRound]:
    """v1 writes round 1 (not scored), a labeler ranks it, PPO makes v2: rounds 1 and 2."""
    register_base_policy("/models/base")
    _prompts(n_prompts)
    round1 = create_round_from_pool(prompts=n_prompts, k=2, overlap=1, sampling={})
    _finish_generation(round1, lambda pk, j: 0.0)
    return round1, _trained(round1, labeler, admin_user)


@override_settings(AUDIT_ANSWERS=2)
def test_a_new_version_is_audited_against_its_parent(db, labeler, admin_user):
    round1, round2 = _second_round(labeler, admin_user, n_prompts=3)
    assert round1.completions.filter(reward=None).count() == 6  # round 1 was not scored
    v1 = PolicyVersion.objects.get(number=1)
    v2 = PolicyVersion.objects.get(number=2)
    assert round2.scored_by.artifact_path.startswith("/a/rm-") and round2.policy_version == v2

    pks = sorted(round2.prompts.values_list("pk", flat=True))
    old = {c.pk: c for c in round1.completions.all()}
    # The new version's answers to the last prompt are the ones its reward model likes most.
    previous = [(pk, -1.0) for pk in old]
    _finish_generation(round2, lambda pk, j: 10.0 + j if pk == pks[-1] else float(j), previous)

    audit = LabelingRound.objects.get(audit_of=v2)
    assert (audit.selection, audit.k, audit.state, audit.scored_by) == (
        "audit",
        2,
        "labeling",
        round2.scored_by,
    )
    assert audit.config["audit"][0] == {"prompt": pks[-1], "reason": "top reward"}
    assert audit.prompts.count() == 2
    top = audit.completions.get(policy_version=v2, prompt_id=pks[-1])
    assert (top.text, top.reward) == (f"answer 1 of {pks[-1]}", 11.0)
    parent = audit.completions.get(policy_version=v1, prompt_id=pks[-1])
    assert parent.text in {c.text for c in old.values() if c.prompt_id == pks[-1]}
    assert parent.reward == -1.0
    # Handed out first (before round 2), K=2; the re-delivered step made no second audit.
    assert LabelingRound.objects.filter(selection="audit").count() == 1
    task = assign_next(labeler)
    assert task.round_id == audit.pk and len(task.order) == 2
    with pytest.raises(Conflict, match="not trained"):
        start_training(audit, "ppo", {}, admin_user)

    # The labeler prefers the parent's answer each time: the reward model is contradicted.
    while task is not None and task.round_id == audit.pk:
        worse, better = sorted(task.order, key=lambda pk: Completion.objects.get(pk=pk).reward)
        ranking = [task.labels()[task.order.index(pk)] for pk in (worse, better)]
        submit_ranking(labeler, task.pk, RankingSubmission(ranking=ranking))
        task = assign_next(labeler)
    result = audit_results([v2])[v2.pk]
    assert (result["ranked"], result["agreement"], result["new_preferred"]) == (2, 0.0, 0.0)
    assert result["flagged"] and result["rm_accuracy"] == 0.9


@override_settings(AUDIT_ANSWERS=0)
def test_no_audit_when_audits_are_off(db, labeler, admin_user):
    round1, round2 = _second_round(labeler, admin_user)
    assert round2.scored_by is None
    _finish_generation(round2, lambda pk, j: float(j))
    assert not LabelingRound.objects.filter(selection="audit").exists()


@override_settings(AUDIT_GATE=True)
def test_the_audit_gate_leaves_the_new_version_to_the_admin(db, labeler, admin_user):
    round1, round2 = _second_round(labeler, admin_user)
    assert PolicyVersion.objects.get(is_current=True).number == 1
    assert round2.policy_version.number == 2  # the chain goes on: v2 writes round 2


@override_settings(UNCERTAIN_POOL_FACTOR=2, AUDIT_ANSWERS=0)
def test_the_next_round_of_an_uncertain_round_chooses_again_from_its_pool(
    reward_model, labeler, admin_user
):
    _prompts(6)
    round1 = create_round_from_pool(prompts=2, k=2, overlap=1, sampling={}, selection="uncertain")
    _finish_generation(round1, lambda pk, j: j * pk)
    pool = round1.config["selection"]["pool"]
    round2 = _trained(round1, labeler, admin_user)
    assert round2.selection == "uncertain" and round2.scored_by.number == 2
    assert sorted(round2.prompts.values_list("pk", flat=True)) == pool
    _finish_generation(round2, lambda pk, j: j / pk)  # now the largest ids are the closest
    round2.refresh_from_db()
    assert round2.config["selection"]["chosen"] == sorted(pool, reverse=True)[:2]


# --- Console and API ---------------------------------------------------------------------------


def _api(user):
    from django.test import Client

    from labelapp.services.tokens import issue_token

    return Client(headers={"authorization": f"Bearer {issue_token(user)}"})


def test_the_api_creates_rounds_by_either_selection_and_refuses_bad_ones(reward_model, admin_user):
    import json

    _prompts(6)
    client = _api(admin_user)

    def post(body):
        return client.post("/api/v1/rounds", json.dumps(body), content_type="application/json")

    for bad, status in (
        ({"prompts": 2, "selection": "best"}, 422),
        ({"prompts": 2, "k": 1}, 422),
        ({"prompts": 0}, 422),
        ({"prompts": 2, "temperature": 9}, 422),
    ):
        assert post(bad).status_code == status, bad
    assert not LabelingRound.objects.exists()
    response = post({"prompts": 2, "k": 2, "selection": "uncertain", "max_new_tokens": 8})
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["selection"], body["scored_by"], body["state"]) == ("uncertain", 1, "generating")
    run = LabelingRound.objects.get(pk=body["id"]).training_runs.get()
    assert run.config["max_new_tokens"] == 8
    assert post({"prompts": 2}).json()["selection"] == "random"


@override_settings(AUDIT_ANSWERS=2, AUDIT_MIN_AGREEMENT=0.6)
def test_console_and_api_show_the_audit_and_labelers_see_only_two_answers(db, labeler, admin_user):
    from django.test import Client

    round1, round2 = _second_round(labeler, admin_user)
    previous = list(round1.completions.values_list("pk", flat=True))
    _finish_generation(round2, lambda pk, j: 5.0 + j, [(pk, 0.0) for pk in previous])
    audit = LabelingRound.objects.get(selection="audit")

    task = _api(labeler).get("/api/v1/tasks/next").json()
    assert task["round"] == audit.number and len(task["completions"]) == 2
    assert set(task["completions"][0]) == {"label", "id", "text"}  # no reward, no version
    new_id = audit.completions.get(policy_version__number=2, prompt_id=task["prompt"]["id"]).pk
    ranking = [c["label"] for c in sorted(task["completions"], key=lambda c: c["id"] != new_id)]
    submitted = _api(labeler).post(
        f"/api/v1/assignments/{task['assignment_id']}/ranking",
        {"ranking": ranking},
        content_type="application/json",
    )
    assert submitted.status_code == 201

    versions = {v["number"]: v for v in _api(admin_user).get("/api/v1/policy-versions").json()}
    assert versions[1]["audit"] is None
    assert versions[2]["audit"] == {
        "round": audit.number,
        "pairs": 2,
        "ranked": 1,
        "agreement": 1.0,
        "new_preferred": 1.0,
        "rm_accuracy": 0.9,
        "flagged": False,
    }
    assert _api(labeler).get("/api/v1/policy-versions").status_code == 403

    console = Client()
    console.force_login(admin_user)
    page = console.get("/console/policies/").content.decode()
    assert "agrees 100%" in page and "of 1/2" in page
    page = console.get(f"/console/rounds/{audit.pk}/").content.decode()
    assert "Audit of v2" in page and "top reward" in page and "Train on this round" not in page
    console_as_labeler = Client()
    console_as_labeler.force_login(labeler)
    assert console_as_labeler.get(f"/console/rounds/{audit.pk}/").status_code == 403
