"""Exports of what labelers produced, streamed row by row."""

import json
from collections.abc import Iterator

from labelapp.models import Comparison, LabelingRound

FORMATS = ("trl",)


def comparisons_as_trl_jsonl(round_: LabelingRound) -> Iterator[str]:
    """One `{prompt, chosen, rejected}` JSON line per comparison (TRL's preference format)."""
    rows = (
        Comparison.objects.filter(ranking__assignment__round=round_)
        .order_by("id")
        .values_list("ranking__assignment__prompt__text", "chosen__text", "rejected__text")
    )
    for prompt, chosen, rejected in rows.iterator(chunk_size=1000):
        yield json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}) + "\n"
