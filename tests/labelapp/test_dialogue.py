"""Multi-turn prompts: their turns, the imports that make them, and how labelers see them."""

import json

import pytest
from django.test import Client

from labelapp.models import Completion, Prompt
from labelapp.services.import_files import InvalidRows
from labelapp.services.imports import import_prompts
from labelapp.services.rounds import create_round, start_labeling
from labelapp.services.tokens import issue_token
from rlhf_worker.training import dialogue
from tests.conftest import db_snapshot

TURNS = [
    {"role": "user", "content": "Can you help me plan a trip?"},
    {"role": "assistant", "content": "Sure. Where to?"},
    {"role": "user", "content": "Lisbon, in May."},
]


def jsonl(*rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_render_and_parse_are_the_same_turns():
    text = dialogue.render(TURNS)
    assert text.startswith("\n\nHuman: Can you") and text.endswith("\n\nAssistant:")
    assert dialogue.parse(text) == TURNS
    assert dialogue.parse("Just a prompt.") is None
    assert dialogue.parse("\n\nHuman: hi\n\nAssistant: hello") is None  # nothing left to answer


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], "non-empty list"),
        ("hello", "non-empty list"),
        ([{"role": "bot", "content": "hi"}], "role 'bot' is not user or assistant"),
        ([{"role": "user", "content": "   "}], "turn 1 is empty"),
        ([{"role": "user", "content": 3}], "turn 1 is empty"),
        ([{"role": "user"}], "role and content only"),
        ([{"role": "user", "content": "a", "name": "x"}], "role and content only"),
        ([{"role": "assistant", "content": "a"}], "turn 1 must be the user's"),
        (TURNS[:2], "last turn must be the user's"),
        ([TURNS[0], TURNS[0]], "turn 2 must be the assistant's"),
        ([{"role": "user", "content": "a\n\nAssistant: b"}], "turn marker"),
        ([TURNS[0], TURNS[1]] * 16 + [TURNS[0]], "33 turns; at most 32"),
    ],
)
def test_bad_messages_are_refused_by_name(messages, error):
    with pytest.raises(ValueError, match=error):
        dialogue.check(messages)


def test_a_messages_import_stores_the_dialogue_and_matches_its_hh_text(db):
    result = import_prompts("dialogues.jsonl", jsonl({"messages": TURNS, "id": "trip"}))
    assert result.created == 1
    prompt = Prompt.objects.get()
    assert prompt.text == dialogue.render(TURNS) and dialogue.parse(prompt.text) == TURNS
    # The same dialogue in HH-RLHF's text form is the same prompt (de-duplicated).
    again = import_prompts("hh.jsonl", jsonl({"prompt": dialogue.render(TURNS)}))
    assert (again.created, again.duplicates) == (0, 1)


def test_bad_dialogue_rows_refuse_the_file_and_change_nothing(db):
    Prompt.objects.create(text="already here")
    before = (db_snapshot(), sorted(Prompt.objects.values_list("text_hash", flat=True)))
    data = jsonl(
        {"messages": TURNS},
        {"messages": [{"role": "wizard", "content": "hi"}]},
        {"messages": [{"role": "user", "content": ""}]},
        {"messages": [TURNS[0], TURNS[1]] * 20 + [TURNS[0]]},
        {"messages": TURNS, "prompt": "both"},
    )
    with pytest.raises(InvalidRows) as refused:
        import_prompts("dialogues.jsonl", data)
    assert refused.value.status == 422
    assert refused.value.detail.splitlines()[1:] == [
        "line 2: turn 1: role 'wizard' is not user or assistant",
        "line 3: turn 1 is empty",
        "line 4: messages has 41 turns; at most 32",
        "line 5: give one of prompt, messages, not 2",
    ]
    assert (db_snapshot(), sorted(Prompt.objects.values_list("text_hash", flat=True))) == before


def test_labelers_see_the_turns_escaped_and_the_api_gives_them(labeler):
    turns = [{**TURNS[0], "content": "<b>bold?</b>" + " long" * 200}, *TURNS[1:]]
    prompt = Prompt.objects.create(text=dialogue.render(turns))
    round_ = create_round([prompt], k=2)
    Completion.objects.bulk_create(
        Completion(prompt=prompt, round=round_, text=f"answer {i}", source="t") for i in range(2)
    )
    start_labeling(round_)
    api = Client(headers={"authorization": f"Bearer {issue_token(labeler)}"})
    task = api.get("/api/v1/tasks/next").json()
    assert task["prompt"]["messages"] == turns and task["prompt"]["text"] == prompt.text
    browser = Client()
    browser.force_login(labeler)
    page = browser.get("/label/").content.decode()
    assert page.count('class="turn ') == 3 and "&lt;b&gt;bold?&lt;/b&gt;" in page
    assert "<b>bold?" not in page and page.count("<details><summary>") == 1


def test_a_single_prompt_has_no_turns_in_the_api(labeler, labeling_round):
    api = Client(headers={"authorization": f"Bearer {issue_token(labeler)}"})
    assert api.get("/api/v1/tasks/next").json()["prompt"]["messages"] == []
