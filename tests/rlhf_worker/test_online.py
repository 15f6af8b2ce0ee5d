import pytest
import torch

from rlhf_worker.training.artifacts import load_causal_lm
from rlhf_worker.training.online import OnlineRLConfig, train_online
from rlhf_worker.training.reward import RankedExample, RewardConfig, train_reward_model


@pytest.fixture(scope="module")
def reward_dir(tiny_model_dir, tmp_path_factory):
    answers = ["yes yes yes", "no", "maybe not", "never"]
    examples = [RankedExample(f"Question {i}", answers) for i in range(16)]
    out = tmp_path_factory.mktemp("rm") / "rm"
    train_reward_model(tiny_model_dir, examples, out, RewardConfig(epochs=1, learning_rate=1e-3))
    return out


@pytest.mark.parametrize("method", ["rloo", "grpo"])
def test_rloo_and_grpo_train_against_the_reward_model(method, tiny_model_dir, reward_dir, tmp_path):
    steps = []
    metrics = train_online(
        method,
        tiny_model_dir,
        reward_dir,
        [f"Question {i}" for i in range(8)],
        tmp_path / method,
        OnlineRLConfig(
            steps=2, batch_size=4, num_generations=2, max_new_tokens=8, learning_rate=1e-3
        ),
        on_step=lambda step, total, m: steps.append((step, total)),
    )
    assert steps == [(1, 2), (2, 2)]
    assert metrics["first_mean_reward"] is not None
    before = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    after = load_causal_lm(tmp_path / method, device=torch.device("cpu"))
    changed = any(
        not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters(), strict=True)
    )
    assert changed
