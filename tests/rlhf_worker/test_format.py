"""One prompt format for every step: the chat template when there is one, else the plain one."""

from rlhf_worker.training.format import (
    PROMPT_TEMPLATE,
    as_messages,
    dialogue_turns,
    encode_exchange,
    encode_prompt,
    format_prompt,
    prompt_key,
)
from rlhf_worker.training.reward import encode_for_reward

LONG_DIALOGUE = [
    {"role": "user", "content": "Tell me about the sea. " * 60},
    {"role": "assistant", "content": "The sea is wide and deep. " * 40},
    {"role": "user", "content": "And the wind?"},
]


def test_a_tokenizer_without_a_chat_template_gets_the_plain_template(tiny_tokenizer):
    assert format_prompt(tiny_tokenizer, " Say hi. ") == PROMPT_TEMPLATE.format(prompt="Say hi.")
    dialogue = format_prompt(tiny_tokenizer, LONG_DIALOGUE[1:])
    assert dialogue.startswith("### Instruction:\nAssistant: The sea is wide")
    assert dialogue.endswith("And the wind?\n\n### Response:\n")


def test_a_conversation_keeps_its_own_system_turn():
    messages = as_messages([{"role": "system", "content": "Be terse."}, *LONG_DIALOGUE], "x")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == "Be terse."
    assert as_messages("Hi.", "Be kind.") == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi."},
    ]
    assert prompt_key(LONG_DIALOGUE) == "And the wind?" == prompt_key("And the wind?")


def test_an_over_long_prompt_loses_its_start_and_both_answers_survive(tiny_tokenizer):
    answers = ["It blows from the west all winter.", "No idea."]
    batch = encode_for_reward(tiny_tokenizer, [LONG_DIALOGUE] * 2, answers, max_length=48)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[1] == 48 and mask[0].sum() == mask[1].sum() == 48  # both cut to fit
    eos = tiny_tokenizer.eos_token_id
    for row, answer in enumerate(answers):
        answer_ids = tiny_tokenizer(answer, add_special_tokens=False)["input_ids"]
        assert ids[row, -len(answer_ids) - 1 :].tolist() == [*answer_ids, eos]
    # The end of the prompt (its last instruction and the template) is what was kept.
    prompt_ids = encode_prompt(tiny_tokenizer, LONG_DIALOGUE)
    kept = encode_exchange(tiny_tokenizer, LONG_DIALOGUE, answers[1], 48)
    assert kept[0][: kept[1]] == prompt_ids[-kept[1] :]
    assert not ids[0].equal(ids[1])  # truncating from the right would leave two equal rows


def test_an_hh_rlhf_dialogue_becomes_its_turns():
    text = (
        "\n\nHuman: Hi there.\n\nAssistant: Hello! How can I help?\n\nHuman: A joke.\n\nAssistant:"
    )
    assert dialogue_turns(text) == [
        {"role": "user", "content": "Hi there."},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "A joke."},
    ]
    assert dialogue_turns("Human: Hi.\n\nAssistant:") == [{"role": "user", "content": "Hi."}]
    # Plain prompts, and text that only looks like a dialogue, stay as they are.
    for text in ("Write a poem about Human: nature.", "\n\nHuman: Hi.\n\nAssistant: Bye."):
        assert dialogue_turns(text) == text


def test_an_imported_dialogue_reaches_every_step_as_its_turns():
    from rlhf_worker.training import dialogue
    from rlhf_worker.training.format import as_messages, dialogue_turns

    turns = dialogue.check(
        [
            {"role": "user", "content": "Plan a trip?"},
            {"role": "assistant", "content": "Where to?"},
            {"role": "user", "content": "Lisbon."},
        ]
    )
    stored = dialogue.render(turns)  # what the import stores as the prompt's text
    system = {"role": "system", "content": "Be brief."}
    assert as_messages(dialogue_turns(stored), "Be brief.") == [system, *turns]
