"""SFT on a real tiny model: prompt masking, a falling loss, and a memorised answer."""

import torch

from rlhf_worker.training.artifacts import load_causal_lm, load_tokenizer
from rlhf_worker.training.format import format_prompt
from rlhf_worker.training.sft import (
    IGNORE_INDEX,
    SFTConfig,
    collate,
    sft_model_dir,
    tokenize_example,
    train_sft,
)

PAIRS = [
    ("Name a primary colour.", "Red is a primary colour."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Give me a synonym for happy.", "Joyful."),
    ("Translate 'gracias' to English.", "Thank you."),
]


def test_labels_mask_the_prompt_and_padding(tiny_tokenizer):
    tok = tiny_tokenizer
    examples = [tokenize_example(tok, p, a, max_length=256) for p, a in PAIRS[:2]]
    batch = collate(tok, examples)
    for row, (prompt, answer) in enumerate(PAIRS[:2]):
        n_prompt = len(tok(format_prompt(tok, prompt))["input_ids"])
        n_real = int(batch["attention_mask"][row].sum())
        labels, ids = batch["labels"][row], batch["input_ids"][row]
        assert (labels[:n_prompt] == IGNORE_INDEX).all()
        assert torch.equal(labels[n_prompt:n_real], ids[n_prompt:n_real])
        assert labels[n_real - 1] == tok.eos_token_id  # the answer's EOS is learned
        assert (labels[n_real:] == IGNORE_INDEX).all()
        assert (ids[n_real:] == tok.pad_token_id).all()
        assert tok.decode(ids[n_prompt:n_real], skip_special_tokens=True) == answer
    assert batch["attention_mask"][0].sum() != batch["attention_mask"][1].sum()  # really padded


def test_truncation_cuts_the_start_of_the_prompt_and_keeps_the_answer(tiny_tokenizer):
    prompt, answer = PAIRS[1]
    whole, _ = tokenize_example(tiny_tokenizer, prompt, answer, max_length=10_000)
    answer_ids = tiny_tokenizer(answer, add_special_tokens=False)["input_ids"]
    n = len(answer_ids) + 1 + 3  # the answer, its EOS and three prompt tokens
    ids, labels = tokenize_example(tiny_tokenizer, prompt, answer, max_length=n)
    assert ids == whole[-n:]  # the prompt's start went; the template's end is still there
    assert labels == [IGNORE_INDEX] * 3 + answer_ids + [tiny_tokenizer.eos_token_id]


def test_loss_goes_down(tiny_tokenizer, tiny_model_dir):
    model = load_causal_lm(tiny_model_dir, device=torch.device("cpu"), dtype=torch.float32)
    calls = []
    config = SFTConfig(epochs=8, batch_size=4, learning_rate=1e-2)
    metrics = train_sft(
        model, tiny_tokenizer, PAIRS * 2, config, on_step=lambda *a: calls.append(a)
    )
    assert metrics["steps"] == 16 == len(metrics["losses"]) == len(calls)
    assert [c[:2] for c in calls] == [(s, 16) for s in range(1, 17)]
    assert metrics["loss_first"] == metrics["losses"][0] > 6.0  # ~ln(1024) at random init
    assert metrics["loss_last"] < 0.5 * metrics["loss_first"]
    assert metrics["seconds"] > 0


def test_memorises_one_answer(tiny_model_dir, tmp_path):
    prompt, answer = PAIRS[1]
    config = SFTConfig(epochs=60, batch_size=4, learning_rate=1e-2)
    metrics = sft_model_dir(tiny_model_dir, [(prompt, answer)] * 4, tmp_path / "sft", config)
    assert metrics["loss_last"] < 0.2

    tok = load_tokenizer(tmp_path / "sft")
    model = load_causal_lm(tmp_path / "sft", device=torch.device("cpu"))
    enc = tok(format_prompt(tok, prompt), return_tensors="pt")
    out = model.generate(**enc, do_sample=False, max_new_tokens=16, pad_token_id=tok.pad_token_id)
    text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.startswith("The capital of France")
