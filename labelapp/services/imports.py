"""Imports from admins' files: prompts, and preference pairs as pre-labeled comparisons.

The file is read and every row validated first (services/import_files.py); nothing is written
unless every row is valid or `skip_invalid` asks to import the good ones anyway.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import PurePath
from typing import BinaryIO

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from labelapp.models import (
    Assignment,
    Comparison,
    Completion,
    LabelingRound,
    PolicyVersion,
    Prompt,
    Ranking,
    text_hash,
)
from labelapp.services.errors import Conflict
from labelapp.services.import_files import (
    BATCH,
    TAG_MAX_CHARS,
    InvalidRows,
    PairRow,
    ParsedFile,
    PromptRow,
    RowError,
    parse_pair_file,
    parse_prompt_file,
    text_argument,
)
from labelapp.services.ranking import expand_to_comparisons
from labelapp.services.rounds import create_round, transition


@dataclass
class PromptImportResult:
    created: int = 0
    duplicates_in_file: int = 0  # same text as an earlier row of the file
    already_present: int = 0  # same text as a prompt in the database
    skipped_invalid: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.duplicates_in_file + self.already_present

    def summary(self) -> str:
        """One line for people: what was created and what was left out."""
        return (
            f"{self.created} prompts created, {self.duplicates_in_file} duplicates in the file "
            f"and {self.already_present} already present skipped, "
            f"{self.skipped_invalid} invalid rows skipped."
        )


@dataclass
class PairImportResult:
    round: LabelingRound | None = None  # None when every pair was left out
    created: int = 0  # comparisons (one per pair)
    prompts_created: int = 0
    duplicate_lines: list[int] = field(default_factory=list)  # a prompt already in the file
    already_present: int = 0  # the same pair imported before
    skipped_invalid: int = 0
    errors: list[RowError] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people: what was created and what was left out."""
        where = f"round {self.round.number}" if self.round else "no round"
        return (
            f"{self.created} pairs imported into {where} ({self.prompts_created} new prompts); "
            f"{len(self.duplicate_lines)} more pairs of a prompt already in the file and "
            f"{self.already_present} pairs imported before skipped, "
            f"{self.skipped_invalid} invalid rows skipped."
        )


def _chunks(items: Iterable, size: int = BATCH) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _prompt_ids(hashes: Iterable[str]) -> dict[str, int]:
    """{text_hash: id} of the prompts already stored, among `hashes`."""
    found: dict[str, int] = {}
    for chunk in _chunks(hashes):
        found.update(Prompt.objects.filter(text_hash__in=chunk).values_list("text_hash", "id"))
    return found


def _checked(name: str, parsed: ParsedFile, skip_invalid: bool) -> None:
    if parsed.errors and not skip_invalid:
        raise InvalidRows(name, parsed.errors)


def import_prompts(
    name: str,
    data: bytes | BinaryIO,
    *,
    source: str = "",
    tags: Iterable[str] = (),
    skip_invalid: bool = False,
    max_bytes: int | None = None,
) -> PromptImportResult:
    """Create a Prompt for every new text of the file; all or nothing unless `skip_invalid`.

    `source` is the default of rows without one (the file's name when empty); `tags` are added
    to every row's. A text already stored, or seen earlier in the file, is skipped and counted.
    """
    source = text_argument("source", source or PurePath(name).name, 100)
    extra_tags = [text_argument("tag", tag, TAG_MAX_CHARS) for tag in tags]
    parsed = parse_prompt_file(name, data, max_bytes=max_bytes)
    _checked(name, parsed, skip_invalid)
    result = PromptImportResult(skipped_invalid=len(parsed.errors), errors=parsed.errors)
    by_hash: dict[str, PromptRow] = {}
    for row in parsed.rows:
        by_hash.setdefault(text_hash(row.text), row)
    result.duplicates_in_file = len(parsed.rows) - len(by_hash)
    try:
        with transaction.atomic():
            stored = _prompt_ids(by_hash)
            new = [
                Prompt(
                    text=row.text,
                    text_hash=digest,  # bulk_create does not call Prompt.save()
                    source=row.source or source,
                    external_id=row.external_id,
                    tags=list(dict.fromkeys(row.tags + extra_tags)),
                    held_out=row.held_out,
                )
                for digest, row in by_hash.items()
                if digest not in stored
            ]
            Prompt.objects.bulk_create(new, batch_size=BATCH)
    except IntegrityError:
        raise Conflict("another import stored some of these prompts meanwhile; retry") from None
    result.created, result.already_present = len(new), len(stored)
    return result


def import_pairs(
    name: str,
    data: bytes | BinaryIO,
    *,
    user: AbstractBaseUser,
    source: str = "",
    skip_invalid: bool = False,
    max_bytes: int | None = None,
) -> PairImportResult:
    """Store a file's {prompt, chosen, rejected} pairs as one new round of submitted rankings.

    The round (K=2, overlap 1, config kind "imported_pairs") holds, per pair, the two answers as
    Completions from "import:<source>", an Assignment submitted by `user`, a Ranking chosen >
    rejected and its Comparison; it is left in `labeling`, so it can be trained like any round,
    and later rounds' training reads it. Prompts are reused by text. One ranking per prompt and
    labeler fits a round, so only the first pair of a prompt is imported and later ones are
    listed in `duplicate_lines`. A pair imported before (same three texts) is skipped, so
    importing the file again puts those left-out pairs into another round.
    """
    source = text_argument("source", source or PurePath(name).stem, 90)
    parsed = parse_pair_file(name, data, max_bytes=max_bytes)
    _checked(name, parsed, skip_invalid)
    result = PairImportResult(skipped_invalid=len(parsed.errors), errors=parsed.errors)
    try:
        with transaction.atomic():
            seen = _imported_before({pair.digest for pair in parsed.rows})
            by_prompt: dict[str, PairRow] = {}
            for pair in parsed.rows:
                if pair.digest in seen:
                    result.already_present += 1
                elif by_prompt.setdefault(text_hash(pair.prompt), pair) is not pair:
                    result.duplicate_lines.append(pair.line)
            pairs = list(by_prompt.items())
            if pairs:
                result.round, result.prompts_created = _store_pairs(name, source, user, pairs)
                result.created = len(pairs)
    except IntegrityError:
        raise Conflict("another change stored some of these rows meanwhile; retry") from None
    return result


def _imported_before(digests: set[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(digests):
        found.update(
            Ranking.objects.filter(payload_hash__in=chunk).values_list("payload_hash", flat=True)
        )
    return found


def _imported_round(
    name: str, source: str, pairs: list[tuple[str, PairRow]]
) -> tuple[LabelingRound, dict[str, int], int]:
    """A new draft round over the pairs' prompts (stored ones reused): (round, ids, created)."""
    stored = _prompt_ids(prompt_hash for prompt_hash, _ in pairs)
    Prompt.objects.bulk_create(
        (
            Prompt(text=pair.prompt, text_hash=prompt_hash, source=source)
            for prompt_hash, pair in pairs
            if prompt_hash not in stored
        ),
        batch_size=BATCH,
    )
    prompt_ids = _prompt_ids(prompt_hash for prompt_hash, _ in pairs)
    round_ = create_round(
        [],
        k=2,
        overlap=1,
        # Training this round starts from today's policy, as a generated round would.
        policy_version=PolicyVersion.objects.filter(is_current=True).first(),
        config={"imported_from": PurePath(name).name, "kind": "imported_pairs", "source": source},
    )
    # The M2M rows in batches: .set() would send every id in one IN (...).
    Through = LabelingRound.prompts.through
    Through.objects.bulk_create(
        (
            Through(labelinground_id=round_.pk, prompt_id=prompt_ids[prompt_hash])
            for prompt_hash, _ in pairs
        ),
        batch_size=BATCH,
    )
    return round_, prompt_ids, len(pairs) - len(stored)


def _store_pairs(
    name: str, source: str, user: AbstractBaseUser, pairs: list[tuple[str, PairRow]]
) -> tuple[LabelingRound, int]:
    """The pairs as a round of submitted rankings, one comparison each: (round, new prompts)."""
    round_, prompt_ids, prompts_created = _imported_round(name, source, pairs)
    completions = [
        Completion(
            prompt_id=prompt_ids[prompt_hash], round=round_, text=text, source=f"import:{source}"
        )
        for prompt_hash, pair in pairs
        for text in (pair.chosen, pair.rejected)
    ]
    Completion.objects.bulk_create(completions, batch_size=BATCH)  # sets pks (RETURNING)
    orders = [[c.pk, r.pk] for c, r in zip(completions[::2], completions[1::2], strict=True)]
    now = timezone.now()
    assignments = [
        Assignment(
            round=round_,
            prompt_id=prompt_ids[prompt_hash],
            labeler=user,
            state=Assignment.State.SUBMITTED,
            order=order,  # A = chosen, B = rejected
            completed_at=now,
        )
        for (prompt_hash, _), order in zip(pairs, orders, strict=True)
    ]
    Assignment.objects.bulk_create(assignments, batch_size=BATCH)
    rankings = [
        Ranking(
            assignment=assignment,
            labeler=user,
            order=order,
            labels=["A", "B"],
            payload_hash=pair.digest,
        )
        for assignment, order, (_, pair) in zip(assignments, orders, pairs, strict=True)
    ]
    Ranking.objects.bulk_create(rankings, batch_size=BATCH)
    Comparison.objects.bulk_create(
        (
            Comparison(ranking=ranking, chosen_id=chosen, rejected_id=rejected)
            for ranking in rankings
            for chosen, rejected in expand_to_comparisons(ranking.order)
        ),
        batch_size=BATCH,
    )
    transition(round_, LabelingRound.State.LABELING)
    return round_, prompts_created
