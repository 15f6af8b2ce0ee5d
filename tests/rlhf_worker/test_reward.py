import math
import random
from itertools import combinations

import pytest
import torch

from rlhf_worker.training.artifacts import load_reward_model, load_tokenizer
from rlhf_worker.training.reward import (
    RewardConfig,
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
        examples.append((f"Question {p}: describe item {p}.", completions))
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
    tied = [(p, c, [0, 1, 1, 2]) for p, c in data]  # the middle two answers tied
    all_tied = [(p, c, [0, 0, 0, 0]) for p, c in preference_data(5, seed=1)]  # compares nothing
    config = RewardConfig(epochs=1, batch_size=8, eval_fraction=0.3)
    metrics = train_reward_model(tiny_model_dir, tied + all_tied, tmp_path / "rm", config)
    assert metrics["train_rankings"] + metrics["held_out_rankings"] == 40
    assert metrics["eval_pairs"] == 5 * metrics["held_out_rankings"]  # C(4,2) - 1 tied pair
