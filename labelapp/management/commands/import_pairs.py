"""manage.py import_pairs FILE --user NAME: {prompt, chosen, rejected} pairs as a labeled round."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from labelapp.services.errors import ServiceError
from labelapp.services.imports import LISTED_ERRORS, InvalidRows, import_pairs


class Command(BaseCommand):
    help = "Import preference pairs as a new round of pre-labeled comparisons."

    def add_arguments(self, parser):
        parser.add_argument("file", help="A .jsonl or .csv file of {prompt, chosen, rejected}.")
        parser.add_argument("--user", required=True, help="The user the rankings are filed under.")
        parser.add_argument("--source", default="", help="Name of the data set (default: file).")
        parser.add_argument(
            "--skip-invalid", action="store_true", help="Import the valid rows, skip the others."
        )

    def handle(self, file, user, source, skip_invalid, **options):
        labeler = get_user_model().objects.filter(username=user).first()
        if labeler is None:
            raise CommandError(f"no user {user!r}")
        try:
            with open(file, "rb") as f:
                result = import_pairs(
                    file, f, user=labeler, source=source, skip_invalid=skip_invalid
                )
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        except InvalidRows as exc:
            raise CommandError(f"{exc.detail}\n(--skip-invalid imports the valid rows)") from None
        except ServiceError as exc:
            raise CommandError(exc.detail) from None
        for error in result.errors[:LISTED_ERRORS]:
            self.stderr.write(f"skipped {error}")
        for line in result.duplicate_lines[:LISTED_ERRORS]:
            self.stderr.write(f"skipped line {line}: a pair of this prompt came earlier")
        self.stdout.write(result.summary())
