import math
import random
from dataclasses import replace
from itertools import combinations

import pytest
import torch

from rlhf_worker.training.artifacts import load_reward_model, load_tokenizer
from rlhf_worker.training.reward import (
    RankedExample,
    RewardConfig,
    is_held_out,
    kwise_ranking_loss,
    pairwise_accuracy,
    score_completions,
    train_reward_model,
)


def logsig(x):
    return math.log(1 / (1 + math.exp(-x)))


def test_kwise_loss_is_the_mean_of_the_pairwise_losses_of_each_ranking():
    rewards = [[2.0, 0.5, 1.0, -1.0], [0.0, 0.3, -0.2, 0.1]]
    expected = sum(
        sum(-logsig(r[i] - r[j]) for i, j in combinations(range(4), 2)) / 6 for r in rewards
    ) / len(rewards)
    assert float(kwise_ranking_loss(torch.tensor(rewards))) == pytest.approx(expected, rel=1e-6)


def test_kwise_loss_gradient_matches_the_hand_derivation():
    r = torch.tensor([[0.2, 1.0, -0.5]], dtype=torch.float64, requires_grad=True)
    kwise_ranking_loss(r).backward()
    values = r.detach()[0].tolist()
    expected = [0.0, 0.0, 0.0]
    for i, j in combinations(range(3), 2):  # i is better than j
        g = 1 / (1 + math.exp(values[i] - values[j]))  # 1 - σ(r_i - r_j)
        expected[i] -= g / 3
        expected[j] += g / 3
    assert r.grad[0].tolist() == pytest.approx(expected, rel=1e-9)
    torch.autograd.gradcheck(kwise_ranking_loss, (r,))


def test_padding_of_a_shorter_ranking_does_not_change_its_loss():
    pair = torch.tensor([[1.0, 0.0]])
    padded = torch.tensor([[1.0, 0.0, 123.0]])
    valid = torch.tensor([[True, True, False]])
    assert float(kwise_ranking_loss(padded, valid)) == pytest.approx(
        float(kwise_ranking_loss(pair))
    )


def test_tied_completions_make_no_pair_in_the_loss_or_the_accuracy():
    # 2.0 > (0.5 = 1.0) > -1.0: the tied pair (0.5, 1.0) is left out, 5 pairs remain.
    rewards = torch.tensor([[2.0, 0.5, 1.0, -1.0]])
    valid = torch.ones(1, 4, dtype=torch.bool)
    groups = torch.tensor([[0, 1, 1, 2]])
    r = rewards[0].tolist()
    pairs = [(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]
    expected = sum(-logsig(r[i] - r[j]) for i, j in pairs) / 5
    assert float(kwise_ranking_loss(rewards, valid, groups)) == pytest.approx(expected, rel=1e-6)
    # Scored 0.5 below 1.0, the tied pair would be a wrong order; it is no pair at all.
    assert pairwise_accuracy(rewards, valid, groups) == (5, 5)
    assert pairwise_accuracy(rewards, valid) == (5, 6)
    # Groups 0, 1, 2, 3 are a strict order: the same loss as without groups.
    strict = torch.tensor([[0, 1, 2, 3]])
    assert float(kwise_ranking_loss(rewards, valid, strict)) == pytest.approx(
        float(kwise_ranking_loss(rewards, valid))
    )


def test_a_ranking_of_weight_0_adds_nothing_to_the_loss():
    rewards = torch.tensor([[2.0, 0.5, 1.0, -1.0], [0.0, 3.0, -0.2, 0.1]])
    r = rewards[0].tolist()
    first_alone = sum(-logsig(r[i] - r[j]) for i, j in combinations(range(4), 2)) / 6
    weighted = kwise_ranking_loss(rewards, weights=torch.tensor([1.0, 0.0]))
    assert float(weighted) == pytest.approx(first_alone, rel=1e-6)
    assert float(weighted) == pytest.approx(float(kwise_ranking_loss(rewards[:1])), rel=1e-6)


def test_weights_2_and_1_make_the_weighted_mean_of_the_rankings_losses():
    # K=2 each: -log σ(1) = log(1 + e^-1) = 0.313262, -log σ(-2) = log(1 + e^2) = 2.126928.
    rewards = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    loss = kwise_ranking_loss(rewards, weights=torch.tensor([2.0, 1.0], dtype=torch.float64))
    assert loss.item() == pytest.approx((2 * 0.31326169 + 2.12692801) / 3, rel=1e-7)
    assert loss.item() == pytest.approx(0.9178171, rel=1e-6)
    loss.backward()
    # d/dr_better of w·log(1 + e^-(r_b - r_w)) / sum(w) = -w·(1 - σ(margin)) / sum(w)
    g_first, g_second = 2 / 3 * (1 - 1 / (1 + math.exp(-1))), 1 / 3 * (1 - 1 / (1 + math.exp(2)))
    assert rewards.grad.tolist() == [
        pytest.approx([-g_first, g_first]),
        pytest.approx([-g_second, g_second]),
    ]


def test_weights_of_1_give_the_unweighted_loss_with_padding_and_ties():
    rewards = torch.tensor([[2.0, 0.5, 1.0, -1.0], [0.3, -0.4, 9.0, 9.0]])
    valid = torch.tensor([[True] * 4, [True, True, False, False]])
    groups = torch.tensor([[0, 1, 1, 2], [0, 1, 0, 0]])
    ones = torch.ones(2)
    assert float(kwise_ranking_loss(rewards, valid, groups, ones)) == pytest.approx(
        float(kwise_ranking_loss(rewards, valid, groups)), rel=1e-7
    )
    # And the same weight for all, whatever it is, is no weighting.
    assert float(kwise_ranking_loss(rewards, valid, groups, 0.3 * ones)) == pytest.approx(
        float(kwise_ranking_loss(rewards, valid, groups)), rel=1e-6
    )


def test_a_batch_whose_weights_are_all_0_contributes_nothing_and_no_nan():
    rewards = torch.tensor([[2.0, 0.5], [0.0, 3.0]], requires_grad=True)
    loss = kwise_ranking_loss(rewards, weights=torch.zeros(2))
    loss.backward()
    assert loss.item() == 0.0
    assert rewards.grad.tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_a_ranked_example_refuses_a_negative_weight_and_groups_of_another_length():
    with pytest.raises(ValueError, match="weight"):
        RankedExample("p", ["a", "b"], weight=-0.5)
    with pytest.raises(ValueError, match="weight"):
        RankedExample("p", ["a", "b"], weight=float("nan"))
    with pytest.raises(ValueError, match="3 groups for 2 completions"):
        RankedExample("p", ["a", "b"], groups=[0, 1, 2])
    assert RankedExample("p", ["a", "b", "c"]).tie_groups == [0, 1, 2]


def preference_data(n_prompts: int, seed: int = 0):
    """Rankings where the best answer says "great" most often: a trivial hidden preference."""
    rng = random.Random(seed)
    filler = ["the", "of", "and", "to", "in", "is", "it", "that", "for", "on", "with", "as"]
    examples = []
    for p in range(n_prompts):
        completions = []
        for rank in range(4):
            words = [rng.choice(filler) for _ in range(6)] + ["great"] * (3 - rank) * 2
            rng.shuffle(words)
            completions.append(" ".join(words))
        examples.append(RankedExample(f"Question {p}: describe item {p}.", completions))
    return examples


def test_the_reward_model_learns_a_trivial_preference(tiny_model_dir, tmp_path):
    steps = []
    metrics = train_reward_model(
        tiny_model_dir,
        preference_data(120),
        tmp_path / "rm",
        RewardConfig(epochs=4, batch_size=8, learning_rate=1e-3, eval_fraction=0.15),
        on_step=lambda step, total, m: steps.append((step, total)),
    )
    assert metrics["held_out_rankings"] > 5
    assert metrics["eval_accuracy"] > 0.9, metrics["eval_accuracy"]
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert steps[-1][0] == steps[-1][1] == len(metrics["steps"])
    # The saved model scores like the trained one, from safetensors.
    model, tok = load_reward_model(tmp_path / "rm"), load_tokenizer(tmp_path / "rm")
    scores = score_completions(model, tok, ["Question 1"] * 2, ["great great great x", "x y z"])
    assert scores[0] > scores[1]


def test_top_layers_trains_only_the_last_layers_and_the_head(tiny_model_dir, tmp_path):
    config = RewardConfig(epochs=1, batch_size=4, learning_rate=1e-2, top_layers=1)
    metrics = train_reward_model(tiny_model_dir, preference_data(8), tmp_path / "rm", config)
    before = load_reward_model(tiny_model_dir).state_dict()
    after = load_reward_model(tmp_path / "rm").state_dict()
    changed = {name for name in after if not torch.equal(after[name], before[name])}
    assert "score.weight" in changed
    assert any(name.startswith("model.layers.1.") for name in changed)
    assert not any(name.startswith(("model.layers.0.", "model.embed_tokens")) for name in changed)
    assert metrics["trainable_parameters"] < sum(t.numel() for t in before.values()) / 2


def test_rankings_with_ties_train_on_their_pairs_across_groups(tiny_model_dir, tmp_path):
    data = preference_data(40)
    tied = [replace(e, groups=[0, 1, 1, 2]) for e in data]  # the middle two answers tied
    all_tied = [replace(e, groups=[0, 0, 0, 0]) for e in preference_data(5, seed=1)]  # no pairs
    config = RewardConfig(epochs=1, batch_size=8, eval_fraction=0.3)
    metrics = train_reward_model(tiny_model_dir, tied + all_tied, tmp_path / "rm", config)
    assert metrics["train_rankings"] + metrics["held_out_rankings"] == 40
    assert metrics["eval_pairs"] == 5 * metrics["held_out_rankings"]  # C(4,2) - 1 tied pair


def test_a_weight_of_2_trains_like_the_ranking_given_twice(tiny_model_dir, tmp_path):
    # One batch holds every ranking, so the order does not matter: weights (2, 1, 1) and the
    # first ranking repeated (1, 1, 1, 1) are the same weighted mean, step by step.
    first, second, third = preference_data(3)
    config = RewardConfig(epochs=3, batch_size=4, learning_rate=1e-2, eval_fraction=0.0)
    weighted = [replace(first, weight=2.0), second, third]
    with_weights = train_reward_model(tiny_model_dir, weighted, tmp_path / "w", config)
    repeated = train_reward_model(
        tiny_model_dir, [first, first, second, third], tmp_path / "r", config
    )
    assert [s["loss"] for s in with_weights["steps"]] == pytest.approx(
        [s["loss"] for s in repeated["steps"]], rel=1e-5
    )
    # Unweighted, the first ranking counts a third, not a half: another curve.
    plain = train_reward_model(tiny_model_dir, [first, second, third], tmp_path / "p", config)
    assert plain["steps"][0]["loss"] != pytest.approx(with_weights["steps"][0]["loss"], rel=1e-3)
    assert (with_weights["ranking_weight_min"], with_weights["ranking_weight_mean"]) == (
        1.0,
        pytest.approx(4 / 3),
    )
    assert (plain["ranking_weight_min"], plain["ranking_weight_mean"]) == (1.0, 1.0)


def test_rankings_of_weight_0_are_held_out_but_not_trained_on(tiny_model_dir, tmp_path):
    data = [replace(e, weight=float(i % 2)) for i, e in enumerate(preference_data(40))]
    config = RewardConfig(epochs=1, batch_size=8, eval_fraction=0.3)
    metrics = train_reward_model(tiny_model_dir, data, tmp_path / "rm", config)
    held_out = [e for e in data if is_held_out(e.prompt, 0.3)]
    training_side = [e for e in data if e not in held_out]
    assert any(e.weight == 0 for e in held_out)  # measured, unweighted, all the same
    assert metrics["held_out_rankings"] == len(held_out)
    assert metrics["train_rankings"] == sum(e.weight > 0 for e in training_side)
    assert metrics["ranking_weight_min"] == 0.0
    assert metrics["ranking_weight_mean"] == pytest.approx(
        sum(e.weight for e in training_side) / len(training_side)
    )
