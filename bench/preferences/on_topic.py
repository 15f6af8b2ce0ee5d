"""A composite hidden preference for bench/loop_learns.py (`--preference file:PATH`).

An answer scores for the prompt's content words it uses (relevance) and loses for the word
trigrams it repeats (a small model's loops); length alone earns nothing: a long answer gains only
if its extra words are on topic and new. Scores are comparable across the answers of one prompt.
"""

import re

STOP = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be by can do for from give has have how i if in is it its me my of "
        "on or please so that the their them then there these this to up was we what when which "
        "who why will with write you your",
    )
)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def score(prompt: str, text: str) -> float:
    """Relevance (share of the prompt's content words the answer uses) minus repetition."""
    topic = {w for w in _words(prompt) if w not in STOP and len(w) > 2}
    words = _words(text)
    relevance = len(topic & set(words)) / max(len(topic), 1)
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    repetition = 1 - len(set(trigrams)) / len(trigrams) if trigrams else 0.0
    return relevance - repetition
