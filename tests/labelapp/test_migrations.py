"""Migrations move existing data: the chain's links leave the JSON config for real columns."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE, AFTER = ("labelapp", "0006_assignment_free_slots"), ("labelapp", "0007_chain_links")


def migrate(target: tuple[str, str]):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.fixture
def back_to_latest(transactional_db):
    """The test walks the schema back and forth; the next tests get the latest one again."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_links_move_from_config_to_columns(back_to_latest):
    old = migrate(BEFORE)
    Run, Round = (
        old.get_model("labelapp", "TrainingRun"),
        old.get_model("labelapp", "LabelingRound"),
    )
    RM = old.get_model("labelapp", "RewardModelVersion")
    trained = Round.objects.create(number=1, config={"sampling": {"k": 4}})
    following = Round.objects.create(number=2, config={"follows_round": trained.pk})
    reward = Run.objects.create(round=trained, kind="reward", config={"method": "ppo"})
    rm = RM.objects.create(number=1, artifact_path="/a/rm", created_by_run=reward)
    links = {"after_run": reward.pk, "reward_model_id": rm.pk}
    sft = Run.objects.create(round=trained, kind="sft", config={"method": "ppo", **links})
    ppo = Run.objects.create(
        round=trained,
        kind="ppo",
        config={
            "method": "ppo",
            "after_run": sft.pk,
            "reward_model_id": rm.pk,
            "start_policy_dir": "/a/sft",
        },
    )

    new = migrate(AFTER)
    Run, Round = (
        new.get_model("labelapp", "TrainingRun"),
        new.get_model("labelapp", "LabelingRound"),
    )
    ppo = Run.objects.get(pk=ppo.pk)
    assert (ppo.after_run_id, ppo.start_policy_id, ppo.reward_model_id) == (sft.pk, sft.pk, rm.pk)
    assert ppo.config == {"method": "ppo"}
    sft = Run.objects.get(pk=sft.pk)
    assert (sft.after_run_id, sft.start_policy_id, sft.reward_model_id) == (reward.pk, None, rm.pk)
    assert Round.objects.get(pk=following.pk).follows_round_id == trained.pk
    assert Round.objects.get(pk=following.pk).config == {}
    assert Round.objects.get(pk=trained.pk).config == {"sampling": {"k": 4}}

    back = migrate(BEFORE)  # and back again
    ppo = back.get_model("labelapp", "TrainingRun").objects.get(pk=ppo.pk)
    assert ppo.config["after_run"] == sft.pk and ppo.config["reward_model_id"] == rm.pk
