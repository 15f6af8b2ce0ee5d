"""manage.py ensure_admin: the first admin from the environment, once."""

from django.contrib.auth import get_user_model
from django.core.management import call_command

from labelapp.access import is_admin


def test_it_creates_the_admin_once_and_keeps_its_password(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "boss")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "first-Pass-2026")
    call_command("ensure_admin")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "other-Pass-2026")
    call_command("ensure_admin")  # the second start of the stack changes nothing
    boss = get_user_model().objects.get(username="boss")
    assert boss.is_superuser and is_admin(boss)
    assert boss.check_password("first-Pass-2026")
    assert get_user_model().objects.count() == 1


def test_it_does_nothing_without_a_username(db, monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    call_command("ensure_admin")
    assert not get_user_model().objects.exists()
