"""Simulated labelers: rank through the real HTTP API by a hidden, known preference.

Used by the demo (`manage.py simulate_labelers`), the end-to-end tests and the learning
benchmark, which can then measure whether the loop learned that preference.
"""

import importlib.util
import json
import random
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

Preference = Callable[[str, str], float]  # (prompt, completion) -> score, higher is better


def _word_preference(word: str) -> Preference:
    pattern = re.compile(rf"\b{re.escape(word.lower())}\b")
    return lambda prompt, text: len(pattern.findall(text.lower()))


def preference(name: str) -> Preference:
    """`longer`, `shorter`, `word:WORD` (mentions it more), or `file:PATH` (its score())."""
    if name == "longer":
        return lambda prompt, text: len(text)
    if name == "shorter":
        return lambda prompt, text: -len(text)
    if name.startswith("word:") and name[5:]:
        return _word_preference(name[5:])
    if name.startswith("file:"):
        spec = importlib.util.spec_from_file_location("preference_file", name[5:])
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot load {name[5:]}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.score
    raise ValueError(f"unknown preference {name!r}: use longer, shorter, word:WORD or file:PATH")


@dataclass
class SimulationReport:
    submitted: int = 0  # rankings of the round asked for
    audited: int = 0  # rankings of audit rounds, which are handed out before other work
    other_round: int = 0
    errors: int = 0


def _call(url: str, token: str, body: dict | None = None) -> tuple[int, dict | None]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 (the admin's own server URL)
        url,
        data=data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def rank_by(prefer: Preference, task: dict, rng: random.Random) -> list[str]:
    """The task's labels best -> worst by the preference (ties in random order)."""
    prompt = task["prompt"]["text"]
    scored = [(prefer(prompt, c["text"]), rng.random(), c["label"]) for c in task["completions"]]
    return [label for _, _, label in sorted(scored, reverse=True)]


def simulate(
    base_url: str, tokens: list[str], round_number: int, prefer: Preference, seed: int = 0
) -> SimulationReport:
    """Each labeler asks for work and ranks it until the round has none left for them; the
    audit tasks they are given on the way are ranked by the same preference, as a person would."""
    from labelapp.models import LabelingRound  # Django: only when simulating

    audits = set(
        LabelingRound.objects.filter(selection=LabelingRound.Selection.AUDIT).values_list(
            "number", flat=True
        )
    )
    rng = random.Random(seed)  # noqa: S311 (tie-breaking, not security)
    report = SimulationReport()
    active = list(tokens)
    while active:
        for token in list(active):
            status, task = _call(f"{base_url}/api/v1/tasks/next", token)
            if status == 204 or task is None:
                active.remove(token)
                continue
            if task["round"] != round_number and task["round"] not in audits:
                report.other_round += 1
                active.remove(token)
                continue
            body = {"ranking": rank_by(prefer, task, rng), "time_spent_ms": 1000}
            url = f"{base_url}/api/v1/assignments/{task['assignment_id']}/ranking"
            status, _ = _call(url, token, body)
            if status in (200, 201) and task["round"] == round_number:
                report.submitted += 1
            elif status in (200, 201):
                report.audited += 1
            else:
                report.errors += 1
                active.remove(token)
    return report
