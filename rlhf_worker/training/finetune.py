"""How much of a model trains: LoRA adapters (peft), and only the top layers.

On a CPU a full fine-tune of a 135M model pays for the weights' gradients and two AdamW moments
(3x the model in memory, and their update time) to move weights that a rank-16 adapter moves
nearly as well; LoRA saves that, but the backward pass still runs through every layer. Training
only the top N layers (the rest frozen) stops the backward pass there and keeps no activations
below it: on a CPU, where compute and memory are what is short, that is the larger saving.
Adapters are merged before saving, so every artifact stays a plain model directory that
from_pretrained (and vLLM) loads.
"""

import warnings

from transformers import PreTrainedModel


def add_lora(
    model: PreTrainedModel, r: int, alpha: int, task_type: str, top_layers: int = 0
) -> PreTrainedModel:
    """`model` with trainable LoRA adapters on its linear layers, its weights frozen.

    task_type "CAUSAL_LM" (a policy) or "SEQ_CLS" (a reward model or critic: its score head
    stays fully trainable, it starts random or small). top_layers > 0 puts adapters on the
    last top_layers transformer layers only.
    """
    from peft import LoraConfig, get_peft_model  # imported only when asked for: it is slow

    lora = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.0,  # our models train in eval mode: no dropout anywhere
        target_modules="all-linear",  # every linear layer but the output head
        modules_to_save=["score"] if task_type == "SEQ_CLS" else None,
        layers_to_transform=_top(model, top_layers) or None,
        task_type=task_type,
    )
    with warnings.catch_warnings():  # peft still asks for transformers' old attribute name
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        return get_peft_model(model, lora)


def _top(model: PreTrainedModel, top_layers: int) -> list[int]:
    """Indices of the last top_layers transformer layers ([] for all, or top_layers <= 0)."""
    n = model.config.num_hidden_layers
    return list(range(n - top_layers, n)) if 0 < top_layers < n else []


def train_top_layers(model: PreTrainedModel, top_layers: int) -> PreTrainedModel:
    """Freeze everything below the last top_layers transformer layers (0: train them all).

    The final norm and any head stay trainable. Frozen layers keep no activations for the
    backward pass, which stops at the first trainable layer.
    """
    top = set(_top(model, top_layers))
    if not top:
        return model
    inner = unwrap(model).base_model  # the backbone: embeddings, layers, final norm
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(f"top_layers needs a Llama-style .layers list; {type(inner).__name__}")
    inner.get_input_embeddings().requires_grad_(False)
    for index, layer in enumerate(layers):
        layer.requires_grad_(index in top)
    return model


def unwrap(model: PreTrainedModel) -> PreTrainedModel:
    """The transformers model inside a peft wrapper (adapters injected in place), or `model`."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def merge_lora(model: PreTrainedModel) -> PreTrainedModel:
    """A plain transformers model: adapters merged into the weights, when there are any."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
