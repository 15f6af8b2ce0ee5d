"""Dialogues as prompts: their turns, and the HH-RLHF text ("\n\nHuman: … \n\nAssistant:") they
are stored as.

Plain Python, no torch: imports and the task page (labelapp) read a dialogue the same way as
every model step (format.py). A dialogue prompt is stored as `render(turns)`; a turn may not hold
a turn marker, so `parse(render(turns)) == turns` and the stored text is the turns, losslessly.
"""

import re
from typing import Any

Message = dict[str, str]

MAX_TURNS = 32
SPEAKERS = {"user": "Human", "assistant": "Assistant"}
_ROLES = {speaker: role for role, speaker in SPEAKERS.items()}
_TURN = re.compile(r"\n\n(Human|Assistant): ?")


def parse(text: str) -> list[Message] | None:
    """The turns of an HH-RLHF dialogue, ending on the user turn to answer (the empty assistant
    turn the text ends on is dropped); None for any other text."""
    if not text.lstrip("\n").startswith("Human:"):
        return None
    parts = _TURN.split("\n\n" + text.lstrip("\n"))  # ["", speaker, content, speaker, …]
    turns = [
        {"role": _ROLES[speaker], "content": content.strip()}
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]
    if turns and turns[-1]["role"] == "assistant" and not turns[-1]["content"]:
        turns.pop()
    if not turns or turns[-1]["role"] != "user":
        return None
    return turns


def render(turns: list[Message]) -> str:
    """The HH-RLHF text of a dialogue, ending on "Assistant:" (the answer to write)."""
    said = "".join(f"\n\n{SPEAKERS[t['role']]}: {t['content']}" for t in turns)
    return said + "\n\nAssistant:"


def check(value: Any) -> list[Message]:
    """`value` as a dialogue's turns, or ValueError saying what is wrong with it.

    A list of 1 to MAX_TURNS {"role", "content"} objects, user and assistant in turn, starting
    and ending with the user; each content a non-empty string without a turn marker.
    """
    if not isinstance(value, list) or not value:
        raise ValueError("messages must be a non-empty list of {role, content}")
    if len(value) > MAX_TURNS:
        raise ValueError(f"messages has {len(value)} turns; at most {MAX_TURNS}")
    turns = []
    for number, turn in enumerate(value, start=1):
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            raise ValueError(f"turn {number} must be an object with role and content only")
        role, content = turn["role"], turn["content"]
        if role not in SPEAKERS:
            raise ValueError(f"turn {number}: role {role!r} is not user or assistant")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"turn {number} is empty")
        if _TURN.search(content) or "\x00" in content:
            raise ValueError(f"turn {number} holds a turn marker (Human:/Assistant:) or NUL")
        expected = "user" if number % 2 else "assistant"
        if role != expected:
            raise ValueError(f"turn {number} must be the {expected}'s (turns alternate)")
        turns.append({"role": role, "content": content.strip()})
    if turns[-1]["role"] != "user":
        raise ValueError("the last turn must be the user's: it is what the answer replies to")
    return turns
