"""create_round_from_pool: the one way the console and `create_round` make a round to generate."""

import pytest

from labelapp.models import LabelingRound, Prompt, TrainingRun
from labelapp.services.errors import Conflict, InvalidInput
from labelapp.services.training import create_round_from_pool, register_base_policy

ROUND = {"prompts": 3, "k": 2, "overlap": 1, "sampling": {"max_new_tokens": 8}}


@pytest.fixture
def pool(db):
    register_base_policy("models/base")
    for i in range(6):
        Prompt.objects.create(text=f"Prompt {i}", source="a" if i < 4 else "b", tags=[f"t{i % 2}"])
    Prompt.objects.create(text="Held out", source="a", held_out=True)


def test_it_draws_from_the_pool_without_held_out_prompts_and_queues_generation(pool, labeler):
    round_ = create_round_from_pool(**ROUND, source="a", tag="t0", seed=1, labelers=[labeler])
    texts = sorted(round_.prompts.values_list("text", flat=True))
    assert texts == ["Prompt 0", "Prompt 2"]  # source a, tag t0; never the held-out one
    assert round_.state == LabelingRound.State.GENERATING
    assert list(round_.labelers.all()) == [labeler]
    run = TrainingRun.objects.get(round=round_)
    assert (run.kind, run.config) == (TrainingRun.Kind.GENERATE, ROUND["sampling"])


def test_the_same_seed_draws_the_same_prompts(pool):
    first = create_round_from_pool(**ROUND, seed=7)
    second = create_round_from_pool(**ROUND, seed=7)
    assert set(first.prompts.all()) == set(second.prompts.all())


def test_no_match_and_no_policy_are_refused_and_create_nothing(db):
    with pytest.raises(Conflict, match="no current policy"):
        create_round_from_pool(**ROUND)
    register_base_policy("models/base")
    with pytest.raises(InvalidInput, match="no prompts match"):
        create_round_from_pool(**ROUND, source="nowhere")
    assert not LabelingRound.objects.exists() and not TrainingRun.objects.exists()
