"""Exports of what labelers produced, streamed row by row.

JSONL exports are generators of lines, for a streamed download or a file. The Hugging Face
exports need the `datasets` package, which the worker image has and the web image does not.
"""

import json
import tempfile
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

from labelapp.models import Comparison, Completion, LabelingRound, Ranking
from labelapp.services.errors import InvalidInput, ServiceError
from labelapp.services.quality import trust_by_labeler
from labelapp.services.ranking import groups_of
from rlhf_worker.training.rankings import RankedExample

FORMATS = ("trl",)  # what GET /api/v1/rounds/{id}/export serves
HF_FORMATS = ("dataset", "parquet")
TRL_COLUMNS = ("prompt", "chosen", "rejected")
CHUNK_SIZE = 1000


class ExportUnavailable(ServiceError):
    """The export needs a package this installation does not have."""

    status = 501


def _comparison_rows(**where) -> Iterator[tuple[str, str, str]]:
    """(prompt, chosen, rejected) texts of the comparisons matching `where`, in id order: the one
    definition of "the comparisons" that exports and training read."""
    rows = (
        Comparison.objects.filter(**where)
        .order_by("id")
        .values_list("ranking__assignment__prompt__text", "chosen__text", "rejected__text")
    )
    return rows.iterator(chunk_size=CHUNK_SIZE)


def _trl_rows(round_id: int) -> Iterator[tuple[str, str, str]]:
    return _comparison_rows(ranking__assignment__round_id=round_id)


def training_comparisons(round_number: int) -> list[tuple[str, str, str]]:
    """Every comparison up to this round as (prompt, chosen, rejected), held-out prompts
    excluded: what DPO trains on."""
    return list(
        _comparison_rows(
            ranking__assignment__round__number__lte=round_number,
            ranking__assignment__prompt__held_out=False,
        )
    )


def training_rankings(round_number: int, trust_weighting: bool = False) -> list[RankedExample]:
    """Every ranking up to this round, held-out prompts, all-bad submissions and hidden repeats
    excluded: what the reward model trains on (the K-wise form of the same comparisons), as
    its RankedExample: the prompt, the completions best -> worst and, for a ranking with ties,
    each completion's group (equal groups tied).

    With `trust_weighting`, each ranking's weight is its labeler's trust now
    (quality.trust_by_labeler, over every round; 1.0 for a labeler with no evidence yet);
    otherwise every weight is 1.0.
    """
    trust = trust_by_labeler() if trust_weighting else {}
    rows = list(
        Ranking.objects.filter(
            assignment__round__number__lte=round_number,
            assignment__prompt__held_out=False,
            assignment__repeat_of=None,
            all_bad=False,
        )
        .order_by("id")
        .values_list("assignment__prompt__text", "order", "tied", "labeler_id")
    )
    ids = {cid for _, order, _, _ in rows for cid in order}
    texts = dict(Completion.objects.filter(pk__in=ids).values_list("id", "text"))
    examples = []
    for prompt, order, tied, labeler_id in rows:
        groups = None
        if tied:
            groups = [g for g, group in enumerate(groups_of(order, tied)) for _ in group]
        weight = trust.get(labeler_id, 1.0)
        examples.append(RankedExample(prompt, [texts[cid] for cid in order], groups, weight))
    return examples


def comparisons_as_trl_jsonl(round_: LabelingRound) -> Iterator[str]:
    """One `{prompt, chosen, rejected}` JSON line per comparison (TRL's preference format)."""
    for prompt, chosen, rejected in _trl_rows(round_.pk):
        yield json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}) + "\n"


def rankings_as_jsonl(round_: LabelingRound) -> Iterator[str]:
    """One JSON line per ranking: who ranked which completions how, with flags and timings.

    `completions` are best -> worst; `ties` are the groups of completion ids ranked equally good
    (empty for a strict order); `labels` are the letters the labeler pressed in that order;
    `flags` are keyed by completion id. An `all_bad` line rejected every answer: its
    `completions` are the answers shown, in no order, and `demonstration` is the better one.
    `repeat_of` is the id of the ranking a hidden repeat repeats (null for others: a repeat has
    no comparisons and trains nothing); `gold` marks a ranking an admin made gold.
    """
    rows = (
        Ranking.objects.filter(assignment__round=round_)
        .order_by("id")
        .values_list(
            "id",
            "assignment__prompt_id",
            "assignment__prompt__text",
            "labeler__username",
            "order",
            "tied",
            "all_bad",
            "assignment__order",
            "labels",
            "flags",
            "quality",
            "time_spent_ms",
            "created_at",
            "assignment__demonstration__text",
            "assignment__repeat_of__ranking",
            "gold",
        )
        .iterator(chunk_size=CHUNK_SIZE)
    )
    while batch := list(islice(rows, CHUNK_SIZE)):
        # One query for the texts of a whole batch of rankings, not one per ranking.
        ids = {cid for row in batch for cid in row[4] + row[7]}
        texts = dict(Completion.objects.filter(pk__in=ids).values_list("id", "text"))
        for pk, prompt_id, prompt, labeler, order, tied, all_bad, shown, *rest in batch:
            labels, flags, quality, time_spent_ms, created_at, demonstration, repeat_of, gold = rest
            line = {
                "round": round_.number,
                "ranking_id": pk,
                "prompt": {"id": prompt_id, "text": prompt},
                "labeler": labeler,
                "completions": [
                    {"id": cid, "text": texts[cid]} for cid in (shown if all_bad else order)
                ],
                "ties": tied,
                "all_bad": all_bad,
                "labels": labels,
                "flags": flags,
                "quality": quality,
                "time_spent_ms": time_spent_ms,
                "created_at": created_at.isoformat(),
                "demonstration": demonstration,
                "repeat_of": repeat_of,
                "gold": gold,
            }
            yield json.dumps(line) + "\n"


# The JSONL exports by name, for downloads and `manage.py export_comparisons`.
JSONL_EXPORTS: dict[str, Callable[[LabelingRound], Iterator[str]]] = {
    "trl": comparisons_as_trl_jsonl,
    "rankings": rankings_as_jsonl,
}


def _trl_examples(round_id: int) -> Iterator[dict]:
    """The generator Dataset.from_generator runs (module level, so `datasets` can hash it)."""
    for row in _trl_rows(round_id):
        yield dict(zip(TRL_COLUMNS, row, strict=True))


def save_comparisons_hf(round_: LabelingRound, out: str | Path, format: str = "dataset") -> int:  # noqa: A002
    """Write the round's comparisons as a `datasets` directory (save_to_disk) or a parquet file.

    `out` is the directory for "dataset", the file for "parquet". Returns the number of rows.
    """
    if format not in HF_FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(HF_FORMATS)}")
    try:
        import datasets  # here, not at the top: the web image does not have it
    except ImportError:
        raise ExportUnavailable(
            "the Hugging Face export needs the `datasets` package (the worker image has it)"
        ) from None
    features = datasets.Features({name: datasets.Value("string") for name in TRL_COLUMNS})
    # A fresh cache: from_generator would otherwise return an earlier export of the same round
    # from ~/.cache, and its files are copied into `out` anyway.
    with tempfile.TemporaryDirectory(prefix="export-") as cache_dir:
        if Comparison.objects.filter(ranking__assignment__round=round_).exists():
            dataset = datasets.Dataset.from_generator(
                _trl_examples,
                features=features,
                gen_kwargs={"round_id": round_.pk},
                cache_dir=cache_dir,
            )
        else:  # from_generator refuses to build an empty dataset
            dataset = datasets.Dataset.from_dict({n: [] for n in TRL_COLUMNS}, features=features)
        if format == "dataset":
            # An empty dataset saved without a shard does not load back (datasets 5.2).
            dataset.save_to_disk(str(out), num_shards=None if len(dataset) else 1)
        else:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            dataset.to_parquet(str(out))
        return len(dataset)
