"""manage.py issue_token USER: print a new Bearer token for the JSON API."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from labelapp.services.tokens import issue_token


class Command(BaseCommand):
    help = "Create an API token for USER and print it (it is shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A note to tell tokens apart.")

    def handle(self, username: str, name: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        self.stdout.write(issue_token(user, name))
