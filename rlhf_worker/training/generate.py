"""Sample K completions per prompt from a causal LM: the answers labelers rank.

Prompts go through the chat template (format.encode_prompt), are sorted by length and generated
in batches (left-padded, so every row's next token is appended at the same column), the K
samples of a prompt in the same generate call, continuing from one prefill of the prompt whose
KV cache is copied K times, under torch.inference_mode. Each completion is cut at its
first EOS and decoded without special tokens. On a GPU host with vLLM installed,
`engine="vllm"` samples with vLLM instead; where vLLM is missing (or there is no GPU) it falls
back to transformers, with a warning.
"""

import importlib.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import DynamicCache, LogitsProcessor, LogitsProcessorList
from transformers import GenerationConfig as HFGenerationConfig

from rlhf_worker.training.artifacts import (
    check_safetensors_only,
    load_causal_lm,
    load_tokenizer,
    peak_memory_metrics,
    pick_device,
    reset_peak_memory,
)
from rlhf_worker.training.configs import SamplingConfig
from rlhf_worker.training.format import Prompt, encode_prompt

logger = logging.getLogger(__name__)


@dataclass
class Generation:
    """The completions of one generate call, and how fast they came."""

    completions: list[list[dict]]  # K per prompt, in the order of the prompts
    metrics: dict  # engine, sampled_tokens, seconds, tokens_per_second[, gpu_peak_memory_mb]


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices into `lengths`, shortest first, cut into batches: similar lengths pad least."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def pick_engine(name: str) -> str:
    """The engine that will run: `name`, or transformers when vllm cannot run here."""
    if name == "vllm" and importlib.util.find_spec("vllm") is None:
        logger.warning("generation engine vllm is not installed: generating with transformers")
        return "transformers"
    if name == "vllm" and not torch.cuda.is_available():
        logger.warning("generation engine vllm needs a GPU: generating with transformers")
        return "transformers"
    return name


# Called after each generate call with (prompts done, prompts in all).
BatchCallback = Callable[[int, int], None]


def generate_completions(
    model_dir: str | Path, prompts: list[Prompt], config: SamplingConfig
) -> list[list[dict]]:
    """K completions for each prompt, in the order of `prompts` (sample_completions' list)."""
    return sample_completions(model_dir, prompts, config).completions


def sample_completions(
    model_dir: str | Path,
    prompts: list[Prompt],
    config: SamplingConfig,
    on_batch: BatchCallback | None = None,
) -> Generation:
    """K completions for each prompt, in the order of `prompts`, and the speed of sampling them.

    Each completion is {"text", "prompt_tokens", "completion_tokens", "finished", "sampling"}:
    completion_tokens counts the generated tokens up to and including EOS, and finished says
    whether EOS came within max_new_tokens. Same prompts, config and seed give the same output.
    Metrics: the engine that ran, sampled_tokens (completion tokens of every sequence sampled;
    greedy decoding samples one per prompt and copies it K times), seconds of sampling (model
    loading excluded), tokens_per_second, and on CUDA with transformers gpu_peak_memory_mb.
    `on_batch(done, total)` is called after each batch of prompts (transformers engine).
    """
    engine = pick_engine(config.engine)
    if not prompts:
        metrics = {"engine": engine, "sampled_tokens": 0, "seconds": 0.0, "tokens_per_second": 0.0}
        return Generation([], metrics)
    tokenizer = load_tokenizer(model_dir)
    # Truncate from the left: the template's assistant turn at the end must survive.
    encoded = [encode_prompt(tokenizer, p)[-config.max_prompt_length :] for p in prompts]
    if engine == "vllm":
        sampled, seconds, device_metrics = _sample_with_vllm(model_dir, tokenizer, encoded, config)
    else:
        sampled, seconds, device_metrics = _sample_with_transformers(
            model_dir, tokenizer, encoded, config, on_batch
        )

    sampling = {
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_new_tokens": config.max_new_tokens,
        "seed": config.seed,
    }
    eos = tokenizer.eos_token_id
    results: list[list[dict]] = []
    sampled_tokens = 0
    for prompt_ids, sequences in zip(encoded, sampled, strict=True):
        completions = []
        for tokens in sequences:
            finished = eos in tokens
            if finished:
                tokens = tokens[: tokens.index(eos) + 1]
            sampled_tokens += len(tokens)
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            # Greedy decoding gives one answer per prompt; it is copied k times.
            completions += [
                {
                    "text": text,
                    "prompt_tokens": len(prompt_ids),
                    "completion_tokens": len(tokens),
                    "finished": finished,
                    "sampling": dict(sampling),
                }
                for _ in range(config.k // len(sequences))
            ]
        results.append(completions)
    metrics = {
        "engine": engine,
        "sampled_tokens": sampled_tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(sampled_tokens / max(seconds, 1e-9), 1),
        **device_metrics,
    }
    return Generation(results, metrics)


@torch.inference_mode()
def _sample_with_transformers(
    model_dir: str | Path,
    tokenizer,
    encoded: list[list[int]],
    config: SamplingConfig,
    on_batch: BatchCallback | None = None,
) -> tuple[list[list[list[int]]], float, dict]:
    """Sampled token ids per prompt (EOS and padding not yet cut), seconds, device metrics."""
    device = pick_device()
    reset_peak_memory(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = load_causal_lm(model_dir, device=device, dtype=dtype).eval()

    greedy = config.temperature <= 0
    hf_config = HFGenerationConfig(
        do_sample=not greedy,
        temperature=None,  # temperature and top-p: NucleusSampling, below
        top_p=None,
        top_k=None if greedy else 0,  # nucleus sampling only, not HF's default top-50 cut
        max_new_tokens=config.max_new_tokens,
        num_return_sequences=1,  # the K samples are K rows of one shared prefill
        use_cache=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    nucleus = LogitsProcessorList([NucleusSampling(config.temperature, config.top_p)])
    per_prompt = 1 if greedy else config.k
    sampled: list[list[list[int]]] = [[] for _ in encoded]
    started = time.monotonic()
    torch.manual_seed(config.seed)
    done = 0
    for idx in length_sorted_batches([len(ids) for ids in encoded], config.batch_size):
        batch = tokenizer.pad(
            {"input_ids": [encoded[i] for i in idx]}, padding_side="left", return_tensors="pt"
        ).to(device)
        cache = _shared_prefill(model, batch, per_prompt)
        batch = {k: v.repeat_interleave(per_prompt, 0) for k, v in batch.items()}
        sequences = model.generate(
            **batch,
            past_key_values=cache,
            generation_config=hf_config,
            logits_processor=None if greedy else nucleus,
        )
        new_tokens = sequences[:, batch["input_ids"].shape[1] :].cpu()  # [len(idx) * k, T]
        for row, tokens in enumerate(new_tokens.tolist()):
            sampled[idx[row // per_prompt]].append(tokens)  # a prompt's samples are consecutive
        done += len(idx)
        if on_batch is not None:
            on_batch(done, len(encoded))
    return sampled, time.monotonic() - started, peak_memory_metrics(device)


class NucleusSampling(LogitsProcessor):
    """Temperature, then top-p: the same tokens as transformers' TemperatureLogitsWarper and
    TopPLogitsWarper, without sorting the whole vocabulary at every step.

    transformers sorts all V logits of every row to find the nucleus (49k for SmolLM2, a third of
    a batched CPU step). The nucleus is almost always within the `candidates` most likely tokens:
    those are found with topk, and a row whose candidates hold less than top_p of the mass falls
    back to the full sort, so the result is exact either way. A token is kept when the mass of
    the tokens more likely than it is below top_p (the most likely is always kept).
    """

    def __init__(self, temperature: float, top_p: float, candidates: int = 256) -> None:
        self.temperature, self.top_p, self.candidates = temperature, top_p, candidates

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores / self.temperature
        if self.top_p >= 1.0:
            return scores
        probs = scores.softmax(dim=-1)
        top, index = probs.topk(min(self.candidates, probs.shape[-1]), dim=-1)
        if bool((top.sum(dim=-1) < self.top_p).any()):  # a flat row: the nucleus may be wider
            top, index = probs.sort(dim=-1, descending=True)
        keep = (top.cumsum(dim=-1) - top) < self.top_p
        mask = torch.ones_like(scores, dtype=torch.bool).scatter_(-1, index, ~keep)
        return scores.masked_fill(mask, float("-inf"))


def _shared_prefill(model, batch: dict[str, torch.Tensor], copies: int) -> DynamicCache | None:
    """The KV cache of every prompt token but the last, computed once per prompt, then copied
    for its K samples. transformers' num_return_sequences would repeat the prompt K times
    before the prefill, and on a CPU the prompts' prefill is most of a short answer's cost.
    generate then feeds only the last prompt token and samples on from there.
    """
    ids, mask = batch["input_ids"][:, :-1], batch["attention_mask"][:, :-1]
    if ids.shape[1] == 0:  # one-token prompts: nothing to share
        return None
    cache = DynamicCache(config=model.config)
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)  # as generate counts them: pads skipped
    model(input_ids=ids, attention_mask=mask, position_ids=position_ids, past_key_values=cache)
    if copies > 1:
        cache.batch_repeat_interleave(copies)
    return cache


def _sample_with_vllm(
    model_dir: str | Path, tokenizer, encoded: list[list[int]], config: SamplingConfig
) -> tuple[list[list[list[int]]], float, dict]:
    """The same as _sample_with_transformers, with vLLM. Untested in this project's CI (no GPU).

    vLLM batches and pages the KV cache itself; it runs in bf16 and reserves most of the GPU
    while it lives, so it suits a worker that only generates. Its memory is not torch's, so no
    gpu_peak_memory_mb is reported.
    """
    from vllm import LLM, SamplingParams  # optional: the vllm extra, GPU hosts only

    greedy = config.temperature <= 0
    params = SamplingParams(
        n=1 if greedy else config.k,
        temperature=0.0 if greedy else config.temperature,
        top_p=1.0 if greedy else config.top_p,
        max_tokens=config.max_new_tokens,
        seed=config.seed,
    )
    check_safetensors_only(model_dir)
    # load_format: vLLM's "auto" falls back to pickle weights (pytorch_model.bin) when a
    # directory has no safetensors; this refuses them, as load_causal_lm does.
    llm = LLM(model=str(model_dir), dtype="bfloat16", seed=config.seed, load_format="safetensors")
    started = time.monotonic()
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in encoded], params)
    seconds = time.monotonic() - started
    sampled = []
    for output in outputs:  # in the order of the prompts
        sequences = []
        for sample in output.outputs:
            tokens = list(sample.token_ids)
            # vLLM stops at EOS with finish_reason "stop"; keep EOS in the tokens either way.
            if sample.finish_reason == "stop" and tokenizer.eos_token_id not in tokens:
                tokens.append(tokenizer.eos_token_id)
            sequences.append(tokens)
        sampled.append(sequences)
    return sampled, seconds, {}
