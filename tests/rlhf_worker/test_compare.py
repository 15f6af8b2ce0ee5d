"""Two policies side by side: same prompts, greedy answers, reward-model scores and win rate."""

from rlhf_worker.training.compare import compare_policies
from rlhf_worker.training.reward import RankedExample, RewardConfig, train_reward_model

PROMPTS = ["Name a colour.", "Say hello.", "Count to three."]


def test_a_policy_against_itself_ties_everywhere(tiny_model_dir, tmp_path):
    rankings = [RankedExample(p, ["short", "a much longer answer"]) for p in PROMPTS * 4]
    rm_dir = tmp_path / "rm"
    train_reward_model(tiny_model_dir, rankings, rm_dir, RewardConfig(epochs=1))
    result = compare_policies(tiny_model_dir, tiny_model_dir, PROMPTS, rm_dir, max_new_tokens=8)
    assert [s["prompt"] for s in result["samples"]] == PROMPTS
    assert all(s["first"] == s["second"] for s in result["samples"])  # greedy: deterministic
    assert result["win_rate"] == 0.5
    first, second = result["mean_scores"]
    assert first == second


def test_without_a_reward_model_only_the_answers_come_back(tiny_model_dir):
    result = compare_policies(tiny_model_dir, tiny_model_dir, PROMPTS[:1], max_new_tokens=4)
    assert len(result["samples"]) == 1 and result["win_rate"] is None
