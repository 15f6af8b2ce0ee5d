import torch

from rlhf_worker.training.artifacts import load_causal_lm
from rlhf_worker.training.dpo import DPOTrainingConfig, train_dpo


def test_dpo_lowers_its_loss_and_changes_the_policy(tiny_model_dir, tmp_path):
    pairs = [(f"Name a colour {i}.", "blue", "I do not know") for i in range(16)]
    steps = []
    metrics = train_dpo(
        tiny_model_dir,
        pairs,
        tmp_path / "dpo",
        DPOTrainingConfig(epochs=3, batch_size=8, learning_rate=5e-3, max_length=64),
        on_step=lambda step, total, m: steps.append(m),
    )
    assert metrics["pairs"] == 16 and len(steps) == 6
    assert metrics["loss_last"] < metrics["loss_first"]
    before = load_causal_lm(tiny_model_dir, device=torch.device("cpu"))
    after = load_causal_lm(tmp_path / "dpo", device=torch.device("cpu"))
    w0 = before.get_input_embeddings().weight
    w1 = after.get_input_embeddings().weight
    assert not torch.equal(w0, w1)
