"""manage.py import_prompts FILE: prompts from a .jsonl or .csv file (see services/imports.py)."""

from django.core.management.base import BaseCommand, CommandError

from labelapp.services.errors import ServiceError
from labelapp.services.imports import LISTED_ERRORS, InvalidRows, import_prompts


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
        try:
            with open(file, "rb") as f:
                result = import_prompts(file, f, source=source, tags=tag, skip_invalid=skip_invalid)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        except InvalidRows as exc:
            raise CommandError(f"{exc.detail}\n(--skip-invalid imports the valid rows)") from None
        except ServiceError as exc:
            raise CommandError(exc.detail) from None
        for error in result.errors[:LISTED_ERRORS]:
            self.stderr.write(f"skipped {error}")
        self.stdout.write(result.summary())
