"""Reading admins' import files: JSONL or CSV in, validated rows and their problems out.

Files are JSONL (one object a line) or CSV (a header row, then one row a line), UTF-8 with or
without a BOM, chosen by their extension. Every row is validated; bad rows are reported by line
number. Texts are kept exactly as given (HTML included: escaping is the templates' job).

Prompt rows: `prompt` (or `text`, or `messages`: a dialogue's turns, [{role, content}, ...],
stored as its HH-RLHF text), optional `tags`, `id` (or `external_id`), `source`, `held_out`.
In CSV, `tags` is one cell with the tags separated by ";" (the "," is CSV's own).
Pair rows: `prompt`, `chosen`, `rejected` (Anthropic's HH-RLHF and TRL's preference format).
Other keys and columns are ignored. Nothing here touches the database (services/imports.py does).
"""

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import PurePath
from typing import Any, BinaryIO

from django.conf import settings

from labelapp.services.errors import InvalidInput
from rlhf_worker.training import dialogue

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
        raise _RowInvalid(f"give one of {', '.join(given)}, not {len(given)}")
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
    key, text = _one_of(record, "prompt", "text", "messages")
    if key == "messages":
        try:
            text = dialogue.render(dialogue.check(text))
        except ValueError as error:
            raise _RowInvalid(str(error)) from None
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


def text_argument(what: str, value: str, max_chars: int) -> str:
    """A command argument checked like a row's text (InvalidInput when it is not)."""
    try:
        return _text(what, value, max_chars)
    except _RowInvalid as exc:
        raise InvalidInput(str(exc)) from None
