"""Model directories: written atomically, loaded from safetensors only.

A model is saved to a temporary sibling directory and renamed into place, so a reader (or a
re-delivered task) never sees a half-written model; a directory that exists is complete.

Weights are never unpickled: a pickle checkpoint (`pytorch_model.bin`, `*.pt`) can run any code
when it is loaded, so a model directory without safetensors weights is refused before
transformers (or vLLM) opens anything in it.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

# Weight files that torch.load would unpickle.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class UnsafeArtifactError(OSError):
    """A model directory whose weights are not safetensors (loading a pickle can run code)."""


def check_safetensors_only(path: str | Path) -> None:
    """Refuse a local model directory that has no `*.safetensors` weights, naming its pickles.

    A hub id (not a local directory) is left to `from_pretrained(use_safetensors=True)`, which
    refuses a repository without safetensors the same way.
    """
    local = Path(path)
    if not local.is_dir() or any(local.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in local.iterdir() if p.suffix in PICKLE_SUFFIXES)
    found = f" (found pickle weights, refused: {', '.join(pickles)})" if pickles else ""
    raise UnsafeArtifactError(
        f"{local} has no safetensors weights{found}. Models are loaded from safetensors only; "
        "re-save the model with save_pretrained(..., safe_serialization=True)."
    )


def pick_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def reset_peak_memory(device: torch.device) -> None:
    """Start counting `peak_memory_metrics` from now (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_metrics(device: torch.device) -> dict:
    """{"gpu_peak_memory_mb": …} since the last reset_peak_memory; {} off CUDA."""
    if device.type != "cuda":
        return {}
    return {"gpu_peak_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}


def atomic_write_dir(out_dir: str | Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp_dir)` and rename tmp_dir to `out_dir`. If `out_dir` exists, do nothing.

    Idempotent by design: a re-run of a finished step finds its output and keeps it.
    """
    out = Path(out_dir)
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write(tmp)
        os.replace(tmp, out)  # atomic on one filesystem; fails if another writer won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not out.exists():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    state_dict: dict | None = None,
) -> Path:
    """save_pretrained (safetensors) of model and tokenizer, atomically.

    `state_dict`, when given, is saved instead of the model's own (the full weights gathered
    from the shards of a ZeRO-3 or FSDP run)."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)

    return atomic_write_dir(out_dir, write)


BUILD_METRICS_FILE = "bootstrap_metrics.json"  # in a base model directory: it is finished

# Builds a base model: (model, tokenizer, metrics to keep beside them).
BaseModelBuild = Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase, dict]]


def build_base_model_once(out_dir: str | Path, build: BaseModelBuild) -> dict:
    """The metrics of the base model in `out_dir`, built by `build()` and saved the first time.

    A directory holding BUILD_METRICS_FILE is a finished build and is kept; model, tokenizer and
    metrics are written in one atomic rename, so an interrupted build leaves nothing behind.
    """
    out = Path(out_dir)
    if (out / BUILD_METRICS_FILE).exists():
        return json.loads((out / BUILD_METRICS_FILE).read_text())
    if out.exists():
        raise FileExistsError(f"{out} exists but holds no {BUILD_METRICS_FILE}")
    model, tokenizer, metrics = build()

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / BUILD_METRICS_FILE).write_text(json.dumps(metrics, indent=1))

    atomic_write_dir(out, write)
    return metrics


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved with a model (a hub id works too, where a hub is reachable)."""
    return AutoTokenizer.from_pretrained(str(path))


def load_causal_lm(
    path: str | Path, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> PreTrainedModel:
    """A causal LM from a local directory or hub id; weights from safetensors only, never pickle."""
    check_safetensors_only(path)
    model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True, dtype=dtype)
    return model.to(device or pick_device())


def load_reward_model(
    path: str | Path, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> PreTrainedModel:
    """A scalar reward model (sequence classification, one label), safetensors only."""
    check_safetensors_only(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(path), num_labels=1, use_safetensors=True, dtype=dtype
    )
    return model.to(device or pick_device())


def load_gguf(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a GGUF file, dequantized to float32, ready to save.

    GGUF holds tensors and metadata only (read by the `gguf` package, nothing is unpickled).
    """
    gguf = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # A GGUF-loaded model refuses save_pretrained until its (already undone) quantization is
    # forgotten; the weights are plain float32 tensors by now.
    model.hf_quantizer.remove_quantization_config(model)
    return model, tokenizer
