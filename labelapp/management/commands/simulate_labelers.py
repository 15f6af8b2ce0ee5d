"""manage.py simulate_labelers --round N --preference NAME: rank a round through the HTTP API."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from labelapp.access import LABELERS
from labelapp.management.simulation import preference, simulate
from labelapp.services.tokens import issue_token


class Command(BaseCommand):
    help = "Simulated labelers rank a round through the real API, by a hidden preference."

    def add_arguments(self, parser):
        parser.add_argument("--round", type=int, required=True, dest="round_number")
        parser.add_argument(
            "--preference",
            required=True,
            dest="preference_name",
            help="longer, shorter, word:WORD or file:PATH",
        )
        parser.add_argument("--labelers", type=int, default=4)
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The site's base URL.")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, round_number, preference_name, labelers, url, seed, **options):
        try:
            prefer = preference(preference_name)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        group = Group.objects.get_or_create(name=LABELERS)[0]
        tokens = []
        for i in range(1, labelers + 1):
            user, _ = get_user_model().objects.get_or_create(username=f"sim-labeler-{i}")
            user.groups.add(group)
            tokens.append(issue_token(user, name="simulate_labelers"))
        report = simulate(url.rstrip("/"), tokens, round_number, prefer, seed)
        self.stdout.write(
            f"{report.submitted} rankings submitted by {labelers} simulated labelers "
            f"(preference {preference_name}), {report.audited} of audit tasks; "
            f"errors: {report.errors}"
        )
        if report.errors:
            raise CommandError(f"{report.errors} submissions were refused")
