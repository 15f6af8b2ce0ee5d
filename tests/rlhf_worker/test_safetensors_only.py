"""Model artifacts are loaded from safetensors only: a planted pickle is refused, never unpickled.

A pickle checkpoint runs code when it is loaded. The planted one here writes a marker file from
its __reduce__; each loader must refuse the directory with a clear error and the marker must
never appear.
"""

import re
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhf_worker.training import generate
from rlhf_worker.training.artifacts import (
    UnsafeArtifactError,
    load_causal_lm,
    load_reward_model,
    load_tokenizer,
)
from rlhf_worker.training.compare import compare_policies
from rlhf_worker.training.dpo import DPOTrainingConfig, train_dpo
from rlhf_worker.training.generate import SamplingConfig, generate_completions
from rlhf_worker.training.online import OnlineRLConfig, train_online
from rlhf_worker.training.ppo import PPOConfig, train_ppo
from rlhf_worker.training.reward import RankedExample, RewardConfig, train_reward_model

ROOT = Path(__file__).resolve().parents[2]


class WritesMarker:
    """Unpickling this runs Path(marker).write_text(...): what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "the pickle ran"))


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "pwned.txt"


@pytest.fixture
def pickle_only_dir(tmp_path, tiny_model_dir, marker) -> Path:
    """The tiny model with its weights as a torch.save pickle (and a hostile one beside)."""
    model_dir = tmp_path / "pickled-model"
    shutil.copytree(tiny_model_dir, model_dir)
    weights = load_file(model_dir / "model.safetensors")
    (model_dir / "model.safetensors").unlink()
    torch.save(weights, model_dir / "pytorch_model.bin")  # a plain state dict, as the hub has
    for name in ("model.bin", "training_args.bin", "optimizer.pt"):
        torch.save({"weights": WritesMarker(marker)}, model_dir / name)
    return model_dir


@pytest.fixture
def hostile_dir(tmp_path, tiny_model_dir, marker) -> Path:
    """Only a hostile pickle where the weights should be."""
    model_dir = tmp_path / "hostile-model"
    shutil.copytree(tiny_model_dir, model_dir)
    (model_dir / "model.safetensors").unlink()
    torch.save({"model.embed_tokens.weight": WritesMarker(marker)}, model_dir / "pytorch_model.bin")
    return model_dir


def test_the_planted_pickle_really_runs_code_when_unpickled(hostile_dir, marker):
    """The control: what the loaders below must never do."""
    torch.load(hostile_dir / "pytorch_model.bin", weights_only=False)  # noqa: S614
    assert marker.read_text() == "the pickle ran"


@pytest.mark.parametrize("loader", [load_causal_lm, load_reward_model])
def test_a_pickle_only_model_directory_is_refused_with_a_clear_error(
    loader, pickle_only_dir, marker
):
    with pytest.raises(UnsafeArtifactError) as refused:
        loader(pickle_only_dir, device=torch.device("cpu"))
    message = str(refused.value)
    assert "has no safetensors weights" in message
    assert "pytorch_model.bin" in message and "safetensors only" in message
    assert not marker.exists()


@pytest.mark.parametrize("loader", [load_causal_lm, load_reward_model])
def test_a_hostile_pickle_never_runs(loader, hostile_dir, marker):
    with pytest.raises(UnsafeArtifactError):
        loader(hostile_dir, device=torch.device("cpu"))
    load_tokenizer(hostile_dir)  # the tokenizer is JSON: it loads, and opens no pickle
    assert not marker.exists()


def test_transformers_refuses_pickle_too_even_without_our_check(hostile_dir, marker):
    """The second lock: from_pretrained(use_safetensors=True) never falls back to pickle."""
    from transformers import AutoModelForCausalLM

    with pytest.raises(OSError, match="no file named model.safetensors"):
        AutoModelForCausalLM.from_pretrained(str(hostile_dir), use_safetensors=True)
    assert not marker.exists()


def test_a_pickle_beside_safetensors_weights_is_ignored(tiny_model_dir, tmp_path, marker):
    model_dir = tmp_path / "both"
    shutil.copytree(tiny_model_dir, model_dir)
    torch.save({"model.embed_tokens.weight": WritesMarker(marker)}, model_dir / "pytorch_model.bin")
    model = load_causal_lm(model_dir, device=torch.device("cpu"))
    assert model.config.num_hidden_layers == 2
    assert not marker.exists()


def test_every_training_entry_point_refuses_a_pickled_model(
    hostile_dir, tiny_model_dir, tmp_path, marker
):
    """Generation, reward model, DPO, PPO, RLOO/GRPO and comparison all load through the check."""
    examples = [RankedExample("Say hi.", ["hi", "hello", "hey"])] * 4
    pairs = [("Say hi.", "hi", "bye")] * 2
    calls = {
        "generate": lambda: generate_completions(hostile_dir, ["Say hi."], SamplingConfig(k=1)),
        "reward": lambda: train_reward_model(
            hostile_dir, examples, tmp_path / "rm", RewardConfig(eval_fraction=0.0)
        ),
        "dpo": lambda: train_dpo(hostile_dir, pairs, tmp_path / "dpo", DPOTrainingConfig()),
        "ppo (reward model)": lambda: train_ppo(
            tiny_model_dir, hostile_dir, ["Say hi."], tmp_path / "ppo", PPOConfig()
        ),
        "grpo (reward model)": lambda: train_online(
            "grpo", tiny_model_dir, hostile_dir, ["Say hi."], tmp_path / "grpo", OnlineRLConfig()
        ),
        "compare (reward model)": lambda: compare_policies(
            tiny_model_dir, tiny_model_dir, ["Say hi."], hostile_dir, max_new_tokens=2
        ),
    }
    for name, call in calls.items():
        with pytest.raises(UnsafeArtifactError):
            call()
        assert not marker.exists(), name
    assert not any((tmp_path / out).exists() for out in ("rm", "dpo", "ppo", "grpo"))


def test_vllm_is_told_to_load_safetensors_only_and_never_sees_a_pickled_model(
    monkeypatch, tiny_model_dir, hostile_dir, tiny_tokenizer
):
    """vLLM's default load_format falls back to pickle; ours pins it (checked with a stand-in)."""
    made = []

    class FakeLLM:
        def __init__(self, **kwargs) -> None:
            made.append(kwargs)

        def generate(self, prompts, params):
            return []

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = FakeLLM, lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", fake)
    config = SamplingConfig(k=1)
    generate._sample_with_vllm(tiny_model_dir, tiny_tokenizer, [], config)
    assert made[0]["load_format"] == "safetensors"
    with pytest.raises(UnsafeArtifactError):
        generate._sample_with_vllm(hostile_dir, tiny_tokenizer, [], config)
    assert len(made) == 1


def test_nothing_in_the_worker_unpickles_or_loads_a_model_around_the_check():
    """torch.load, pickle and from_pretrained of a model appear only where the check guards them."""
    offenders = []
    for path in (ROOT / "rlhf_worker").rglob("*.py"):
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        if re.search(r"\btorch\.load\(|\bimport pickle\b|\bpickle\.loads?\(|\bjoblib\b", text):
            offenders.append(name)
        for call in re.findall(r"(\w+)\.from_pretrained\(", text):
            if call != "AutoTokenizer" and name != "rlhf_worker/training/artifacts.py":
                offenders.append(f"{name}: {call}.from_pretrained")
    assert offenders == []
    artifacts = (ROOT / "rlhf_worker/training/artifacts.py").read_text()
    model_calls = re.split(r"AutoModel\w*\.from_pretrained\(", artifacts)[1:]
    assert len(model_calls) == 3
    # Safetensors, or the GGUF of the shipped base model (tensors and metadata, no pickle).
    assert all(
        "use_safetensors=True" in call[:120] or "gguf_file=gguf.name" in call[:120]
        for call in model_calls
    )
    assert sum("gguf_file=" in call[:120] for call in model_calls) == 1
