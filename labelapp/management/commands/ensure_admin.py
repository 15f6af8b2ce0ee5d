"""manage.py ensure_admin: the first admin, from DJANGO_SUPERUSER_* variables (idempotent)."""

import os

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand

from labelapp.access import ADMINS


class Command(BaseCommand):
    help = (
        "Create the superuser named by DJANGO_SUPERUSER_USERNAME (password from "
        "DJANGO_SUPERUSER_PASSWORD, as Django's createsuperuser reads them) unless it exists, "
        "and put it in the admins group. Does nothing when the variable is unset."
    )

    def handle(self, **options):
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "").strip()
        if not username:
            self.stdout.write("DJANGO_SUPERUSER_USERNAME is not set: no admin created.")
            return
        users = get_user_model().objects
        if not users.filter(username=username).exists():
            email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
            call_command(
                "createsuperuser", interactive=False, username=username, email=email, verbosity=0
            )
            self.stdout.write(f"Admin {username} created.")
        users.get(username=username).groups.add(Group.objects.get(name=ADMINS))
