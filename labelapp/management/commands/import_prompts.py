"""manage.py import_prompts FILE: prompts from .jsonl or .csv (format: services/import_files.py)."""

from collections.abc import Callable
from typing import Any, BinaryIO

from django.core.management.base import BaseCommand, CommandError

from labelapp.services.errors import ServiceError
from labelapp.services.import_files import LISTED_ERRORS, InvalidRows
from labelapp.services.imports import import_prompts


def run_import(command: BaseCommand, file: str, importer: Callable[[BinaryIO], Any]) -> Any:
    """Open `file` and hand it to `importer`; the service's refusal becomes a CommandError.

    Rows skipped with --skip-invalid are listed on stderr. Shared with import_pairs.
    """
    try:
        with open(file, "rb") as f:
            result = importer(f)
    except OSError as exc:
        raise CommandError(f"cannot read {file}: {exc.strerror}") from None
    except InvalidRows as exc:
        raise CommandError(f"{exc.detail}\n(--skip-invalid imports the valid rows)") from None
    except ServiceError as exc:
        raise CommandError(exc.detail) from None
    for error in result.errors[:LISTED_ERRORS]:
        command.stderr.write(f"skipped {error}")
    return result


class Command(BaseCommand):
    help = "Import prompts from a .jsonl or .csv file; duplicates (by text) are skipped."

    def add_arguments(self, parser):
        parser.add_argument("file", help="A .jsonl or .csv file of prompts.")
        parser.add_argument(
            "--skip-invalid", action="store_true", help="Import the valid rows, skip the others."
        )
        parser.add_argument("--source", default="", help="Source of rows without one.")
        parser.add_argument(
            "--tag", action="append", default=[], help="A tag for every prompt (repeatable)."
        )

    def handle(self, file, skip_invalid, source, tag, **options):
        result = run_import(
            self,
            file,
            lambda f: import_prompts(file, f, source=source, tags=tag, skip_invalid=skip_invalid),
        )
        self.stdout.write(result.summary())
