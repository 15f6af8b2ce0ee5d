"""manage.py import_pairs FILE --user NAME: {prompt, chosen, rejected} pairs as a labeled round."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from labelapp.management.commands.import_prompts import run_import
from labelapp.services.import_files import LISTED_ERRORS
from labelapp.services.imports import import_pairs


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
        result = run_import(
            self,
            file,
            lambda f: import_pairs(file, f, user=labeler, source=source, skip_invalid=skip_invalid),
        )
        for line in result.duplicate_lines[:LISTED_ERRORS]:
            self.stderr.write(f"skipped line {line}: a pair of this prompt came earlier")
        self.stdout.write(result.summary())
