"""Sample K completions per prompt from a causal LM: the answers labelers rank.

Prompts are sorted by length and generated in batches (left-padded, so every row's next token
is appended at the same column), K samples per prompt from one forward of its prompt, with the
KV cache. Each completion is cut at its first EOS and decoded without special tokens.
"""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import GenerationConfig as HFGenerationConfig

from rlhf_worker.training.artifacts import load_causal_lm, load_tokenizer, pick_device
from rlhf_worker.training.format import format_prompt


@dataclass
class GenerationConfig:
    k: int = field(default=4, metadata={"help": "Completions sampled per prompt."})
    max_new_tokens: int = field(default=64, metadata={"help": "Longest completion, in tokens."})
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature; 0 means greedy decoding."}
    )
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling probability mass."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per generate call."})
    max_prompt_length: int = field(
        default=256, metadata={"help": "Formatted prompts keep their last this many tokens."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the sampling."})


@torch.inference_mode()
def generate_completions(
    model_dir: str | Path, prompts: list[str], config: GenerationConfig
) -> list[list[dict]]:
    """K completions for each prompt, in the order of `prompts`.

    Each completion is {"text", "prompt_tokens", "completion_tokens", "finished", "sampling"}:
    completion_tokens counts the generated tokens up to and including EOS, and finished says
    whether EOS came within max_new_tokens. Same prompts, config and seed give the same output.
    """
    if not prompts:
        return []
    device = pick_device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir, device=device, dtype=dtype).eval()

    greedy = config.temperature <= 0
    hf_config = HFGenerationConfig(
        do_sample=not greedy,
        temperature=None if greedy else config.temperature,
        top_p=None if greedy else config.top_p,
        top_k=None if greedy else 0,  # nucleus sampling only, not HF's default top-50 cut
        max_new_tokens=config.max_new_tokens,
        # Greedy decoding gives one answer per prompt; it is copied k times below.
        num_return_sequences=1 if greedy else config.k,
        use_cache=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    sampling = {
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_new_tokens": config.max_new_tokens,
        "seed": config.seed,
    }

    # Truncate from the left: the template's "### Response:" at the end must survive.
    encoded = [
        tokenizer(format_prompt(p))["input_ids"][-config.max_prompt_length :] for p in prompts
    ]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))  # less padding per batch
    results: list[list[dict]] = [[] for _ in prompts]
    torch.manual_seed(config.seed)
    for start in range(0, len(order), config.batch_size):
        idx = order[start : start + config.batch_size]
        batch = tokenizer.pad(
            {"input_ids": [encoded[i] for i in idx]}, padding_side="left", return_tensors="pt"
        ).to(device)
        sequences = model.generate(**batch, generation_config=hf_config)
        new_tokens = sequences[:, batch["input_ids"].shape[1] :].cpu()  # [len(idx) * k, T]
        per_prompt = hf_config.num_return_sequences
        for row, tokens in enumerate(new_tokens.tolist()):
            i = idx[row // per_prompt]  # generate returns a prompt's samples consecutively
            finished = tokenizer.eos_token_id in tokens
            if finished:
                tokens = tokens[: tokens.index(tokenizer.eos_token_id) + 1]
            results[i] += [
                {
                    "text": tokenizer.decode(tokens, skip_special_tokens=True),
                    "prompt_tokens": len(encoded[i]),
                    "completion_tokens": len(tokens),
                    "finished": finished,
                    "sampling": dict(sampling),
                }
                for _ in range(config.k // per_prompt)
            ]
    return results
