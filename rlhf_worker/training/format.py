"""How every step turns a prompt into tokens: one function for generation, reward model, PPO,
RLOO/GRPO, DPO, SFT and compare.

A prompt is a string (one user turn) or a conversation, a list of {"role", "content"} messages.
When the tokenizer has a chat template (an instruct model's), the conversation goes through it
with a system turn we choose (`as_messages`), never the template's own silent default; a
tokenizer without one (the tiny local model's) gets PROMPT_TEMPLATE, which has no system turn.

Token lengths come from the sequences themselves, never from the pad id: an instruct model's pad
is often its EOS, and the EOS that ends an answer must be read, scored and trained on.
"""

import torch
from transformers import PreTrainedTokenizerBase

from rlhf_worker.training import dialogue

PROMPT_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

Message = dialogue.Message
Prompt = str | list[Message]


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def as_messages(prompt: Prompt, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[Message]:
    """The conversation of `prompt`, opening with `system_prompt` unless it has a system turn."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if messages and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def dialogue_turns(text: str) -> Prompt:
    """A stored prompt as a model reads it: an HH-RLHF dialogue ("\n\nHuman: … \n\nAssistant:")
    as its turns (dialogue.parse), any other text as it is."""
    return dialogue.parse(text) or text


def prompt_key(prompt: Prompt) -> str:
    """The text that names a prompt (its last user turn), for stable splits and lookups."""
    if isinstance(prompt, str):
        return prompt
    return next(m["content"] for m in reversed(prompt) if m["role"] == "user")


def format_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt) -> str:
    """The text a model is conditioned on for `prompt`; its answer follows directly.

    A string prompt opens with DEFAULT_SYSTEM_PROMPT; the worker's steps pass conversations made
    by as_messages with the SYSTEM_PROMPT setting.
    """
    messages = as_messages(prompt)
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    turns = [m for m in messages if m["role"] != "system"]
    # Earlier turns of a dialogue are kept as plain text above the last instruction.
    history = "".join(f"{m['role'].capitalize()}: {m['content'].strip()}\n\n" for m in turns[:-1])
    return PROMPT_TEMPLATE.format(prompt=history + turns[-1]["content"].strip())


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt) -> list[int]:
    """Token ids of format_prompt: a chat template writes its own special tokens (BOS too)."""
    text = format_prompt(tokenizer, prompt)
    return tokenizer(text, add_special_tokens=not has_chat_template(tokenizer))["input_ids"]


def encode_answer(tokenizer: PreTrainedTokenizerBase, answer: str) -> list[int]:
    """Token ids of an answer as the model writes it: the text, then EOS."""
    return [*tokenizer(answer, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]


def encode_exchange(
    tokenizer: PreTrainedTokenizerBase,
    prompt: Prompt,
    answer: str,
    max_length: int,
) -> tuple[list[int], int]:
    """(prompt ids + answer ids + EOS, how many of them are the prompt's), at most max_length.

    Too long, the prompt loses its start, never the answer: two answers to one long dialogue must
    not look the same. Only an answer longer than max_length by itself loses its end.
    """
    prompt_ids = encode_prompt(tokenizer, prompt)
    answer_ids = encode_answer(tokenizer, answer)[:max_length]
    keep = max_length - len(answer_ids)
    prompt_ids = prompt_ids[len(prompt_ids) - keep :] if keep > 0 else []
    return prompt_ids + answer_ids, len(prompt_ids)


def pad_right(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [B, T], attention mask [B, T]) of right-padded rows; the mask is 1 where a row
    has a token, whatever its id (a pad id equal to EOS hides nothing)."""
    width = max(len(row) for row in rows)
    tokens = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        tokens[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[index, : len(row)] = 1
    return tokens, mask
