"""The worker's reward step: the rankings the database holds train a reward model."""

import pytest

from labelapp.models import TrainingRun
from labelapp.services.assignment import assign_next
from labelapp.services.quality import trust_by_labeler
from labelapp.services.ranking import RankingSubmission, submit_ranking
from rlhf_worker.steps import reward_step
from tests.conftest import make_round, make_user
from tests.labelapp.test_export import rank_with_a_contrarian


@pytest.fixture
def worker_settings(settings, tiny_model_dir, tmp_path):
    settings.BASE_MODEL = str(tiny_model_dir)  # the round has no policy version: the base
    settings.ARTIFACTS_DIR = tmp_path
    settings.TRAINING_PROCESSES = 1
    settings.ACCELERATE_CONFIG = ""
    return settings


def reward_run(round_, **reward) -> TrainingRun:
    hyperparameters = {"reward": {"epochs": 1, "eval_fraction": 0.0, **reward}}
    return TrainingRun.objects.create(
        round=round_, kind=TrainingRun.Kind.REWARD, config={"hyperparameters": hyperparameters}
    )


def test_a_round_with_a_tie_trains_on_its_pairs_across_groups(worker_settings, labeler):
    round_ = make_round(n_prompts=3)
    for ranking in (["C", ["A", "D"], "B"], list("ABCD"), list("DCBA")):
        task = assign_next(labeler)
        submit_ranking(labeler, task.pk, RankingSubmission(ranking=ranking))
    result = reward_step(reward_run(round_))
    metrics = result["metrics"]
    assert metrics["train_rankings"] == 3
    assert metrics["train_pairs"] == 5 + 6 + 6  # the tied pair is no pair
    assert (metrics["ranking_weight_min"], metrics["ranking_weight_mean"]) == (1.0, 1.0)


def test_trust_weighting_weighs_each_ranking_by_its_labelers_trust(
    worker_settings, labeler, other_labeler
):
    contrarian = make_user("contrarian", "labelers")
    round_ = make_round(n_prompts=4, overlap=3)
    rank_with_a_contrarian(round_, [labeler, other_labeler], contrarian)
    distrusted = trust_by_labeler()[contrarian.pk]
    assert distrusted < 0.5

    metrics = reward_step(reward_run(round_, trust_weighting=True))["metrics"]
    assert metrics["trust_weighting"] is True
    assert metrics["train_rankings"] == 12
    assert metrics["ranking_weight_min"] == pytest.approx(distrusted)
    assert metrics["ranking_weight_mean"] == pytest.approx((8 + 4 * distrusted) / 12)
    off = reward_step(reward_run(round_))["metrics"]
    assert off["trust_weighting"] is False
    assert (off["ranking_weight_min"], off["ranking_weight_mean"]) == (1.0, 1.0)
