"""Imports from admins' files: prompts, and preference pairs as pre-labeled comparisons.

Files are JSONL (one object a line) or CSV (a header row, then one row a line), UTF-8 with or
without a BOM, chosen by their extension. Every row is validated first; bad rows are reported by
line number, and nothing is written unless `skip_invalid` asks to import the good ones anyway.
Texts are stored exactly as given (HTML included: escaping is the templates' job).

Prompt rows: `prompt` (or `text`), optional `tags`, `id` (or `external_id`), `source`,
`held_out`. In CSV, `tags` is one cell with the tags separated by ";" (the "," is CSV's own).
Pair rows: `prompt`, `chosen`, `rejected` (Anthropic's HH-RLHF and TRL's preference format).
Other keys and columns are ignored.
"""

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from pathlib import PurePath
from typing import Any, BinaryIO

from django.conf import settings
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
from labelapp.services.errors import Conflict, InvalidInput
from labelapp.services.ranking import expand_to_comparisons
from labelapp.services.rounds import create_round, transition

EXTENSIONS = (".jsonl", ".csv")
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
TEXT_MAX_CHARS = 20_000
TAG_MAX_CHARS = 100
TAG_SEPARATOR = ";"
LISTED_ERRORS = 20
BATCH = 500  # rows per INSERT and ids per IN (...): under every SQLite build's 999 variables
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class _RowInvalid(Exception):
    """One row's first problem, as the message shown after its line number."""


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class InvalidRows(InvalidInput):
    """A file with invalid rows, refused whole; `errors` lists them all by line."""

    def __init__(self, name: str, errors: list[RowError]) -> None:
        super().__init__(describe_errors(name, errors))
        self.errors = errors


@dataclass(frozen=True)
class PromptRow:
    line: int
    text: str
    tags: list[str] = field(default_factory=list)
    external_id: str = ""
    source: str = ""
    held_out: bool = False


@dataclass(frozen=True)
class PairRow:
    line: int
    prompt: str
    chosen: str
    rejected: str

    @cached_property
    def digest(self) -> str:
        """The pair's fingerprint, stored as its Ranking's payload_hash to find re-imports."""
        pair = [self.prompt, self.chosen, self.rejected]
        return hashlib.sha256(json.dumps(pair).encode("utf-8")).hexdigest()


@dataclass
class ParsedFile:
    """The valid rows of a file, and the problems of the others."""

    rows: list = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


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


def describe_errors(name: str, errors: list[RowError]) -> str:
    """The message for a refused file: the first bad rows by line, then how many more."""
    lines = [f"{len(errors)} invalid rows in {name}; nothing was imported:"]
    lines += [str(error) for error in errors[:LISTED_ERRORS]]
    if len(errors) > LISTED_ERRORS:
        lines.append(f"and {len(errors) - LISTED_ERRORS} more")
    return "\n".join(lines)


# Reading a file ---------------------------------------------------------------------------------


def max_import_bytes() -> int:
    """The largest file an import accepts (settings.IMPORT_MAX_BYTES, 10 MiB by default)."""
    return getattr(settings, "IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES)


def _extension(name: str) -> str:
    suffix = PurePath(name).suffix.lower()
    if suffix not in EXTENSIONS:
        raise InvalidInput(f"{name}: unsupported file type; use {' or '.join(EXTENSIONS)}")
    return suffix


def _read_text(name: str, data: bytes | BinaryIO, max_bytes: int) -> str:
    """The file's text, refusing it when it is too large or not UTF-8."""
    # Reading one byte past the limit tells "too large" without reading a huge upload whole.
    raw = data if isinstance(data, bytes) else data.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise InvalidInput(f"{name} is larger than the import limit of {max_bytes:,} bytes")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvalidInput(f"{name} is not UTF-8 text (line {line}); save it as UTF-8") from None


def _jsonl_records(text: str) -> Iterator[tuple[int, Any]]:
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other "line breaks".
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, RowError(number, f"not valid JSON ({exc.msg}, column {exc.colno})")


def _csv_records(name: str, text: str) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [column.strip().lower() for column in next(reader, [])]
        if not any(header):
            raise InvalidInput(f"{name}: the first line must be a header row of column names")
        if len(set(header)) != len(header):
            raise InvalidInput(f"{name}: the header row names a column twice")
        end_of_last = reader.line_num
        for row in reader:
            number, end_of_last = end_of_last + 1, reader.line_num  # a row may span lines
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                error = f"has {len(row)} fields, the header has {len(header)}"
                yield number, RowError(number, error)
                continue
            yield number, {key: cell for key, cell in zip(header, row, strict=True) if cell != ""}
    except csv.Error as exc:
        raise InvalidInput(f"{name}: line {reader.line_num}: {exc}") from None


def _parse(
    name: str, data: bytes | BinaryIO, row: Callable[[int, dict], Any], max_bytes: int | None
) -> ParsedFile:
    """Read, decode and split a file into records, and validate each with `row`."""
    extension = _extension(name)
    text = _read_text(name, data, max_import_bytes() if max_bytes is None else max_bytes)
    records = _jsonl_records(text) if extension == ".jsonl" else _csv_records(name, text)
    parsed = ParsedFile()
    for number, record in records:
        if isinstance(record, RowError):
            parsed.errors.append(record)
        elif not isinstance(record, dict):
            parsed.errors.append(RowError(number, "expected a JSON object {...}"))
        else:
            try:
                parsed.rows.append(row(number, record))
            except _RowInvalid as exc:
                parsed.errors.append(RowError(number, str(exc)))
    if not parsed.rows and not parsed.errors:
        raise InvalidInput(f"{name} has no rows")
    return parsed


# Validating a row -------------------------------------------------------------------------------


def _one_of(record: dict, *keys: str) -> tuple[str, Any]:
    """(key, value) of whichever of the synonym keys is given; both at once is an error."""
    given = [key for key in keys if record.get(key) is not None]
    if len(given) > 1:
        raise _RowInvalid(f"give {' or '.join(keys)}, not both")
    return (given[0], record[given[0]]) if given else (keys[0], None)


def _text(key: str, value: Any, max_chars: int = TEXT_MAX_CHARS, required: bool = True) -> str:
    if value is None or (not required and value == ""):
        if required:
            raise _RowInvalid(f"{key} is missing")
        return ""
    if not isinstance(value, str):
        raise _RowInvalid(f"{key} must be a string")
    if required and not value.strip():
        raise _RowInvalid(f"{key} is empty")
    if len(value) > max_chars:
        raise _RowInvalid(f"{key} is longer than {max_chars:,} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise _RowInvalid(f"{key} contains a NUL character")
    return value


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # a CSV cell
        value = value.split(TAG_SEPARATOR)
    elif not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise _RowInvalid("tags must be a list of strings")
    tags = [_text("a tag", tag.strip(), TAG_MAX_CHARS) for tag in value if tag.strip()]
    return list(dict.fromkeys(tags))


def _held_out(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _RowInvalid("held_out must be true or false")


def prompt_row(line: int, record: dict) -> PromptRow:
    """A validated prompt row, or _RowInvalid naming its first problem."""
    key, text = _one_of(record, "prompt", "text")
    _, external_id = _one_of(record, "id", "external_id")
    if isinstance(external_id, int) and not isinstance(external_id, bool):
        external_id = str(external_id)
    return PromptRow(
        line=line,
        text=_text(key, text),
        tags=_tags(record.get("tags")),
        external_id=_text("id", external_id, 200, required=False),
        source=_text("source", record.get("source"), 100, required=False),
        held_out=_held_out(record.get("held_out")),
    )


def pair_row(line: int, record: dict) -> PairRow:
    """A validated preference pair, or _RowInvalid naming its first problem."""
    pair = PairRow(
        line=line,
        prompt=_text("prompt", record.get("prompt")),
        chosen=_text("chosen", record.get("chosen")),
        rejected=_text("rejected", record.get("rejected")),
    )
    if pair.chosen == pair.rejected:
        raise _RowInvalid("chosen and rejected are the same text")
    return pair


def parse_prompt_file(
    name: str, data: bytes | BinaryIO, *, max_bytes: int | None = None
) -> ParsedFile:
    """The valid PromptRows of a .jsonl or .csv file and the errors of the others, by line.

    Raises InvalidInput for a problem of the whole file (type, size, encoding, no rows).
    """
    return _parse(name, data, prompt_row, max_bytes)


def parse_pair_file(
    name: str, data: bytes | BinaryIO, *, max_bytes: int | None = None
) -> ParsedFile:
    """The valid PairRows of a .jsonl or .csv file and the errors of the others, by line."""
    return _parse(name, data, pair_row, max_bytes)


# Writing ----------------------------------------------------------------------------------------


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


def _text_argument(what: str, value: str, max_chars: int) -> str:
    try:
        return _text(what, value, max_chars)
    except _RowInvalid as exc:
        raise InvalidInput(str(exc)) from None


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
    source = _text_argument("source", source or PurePath(name).name, 100)
    extra_tags = [_text_argument("tag", tag, TAG_MAX_CHARS) for tag in tags]
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
    source = _text_argument("source", source or PurePath(name).stem, 90)
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
