"""The session cookie: HttpOnly and SameSite=Lax always, Secure whenever DEBUG is off."""

import os
import subprocess
import sys
from pathlib import Path

from django.test import Client

from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]


def test_the_session_cookie_of_a_login_is_httponly_and_samesite_lax(labeler):
    client = Client()
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    cookie = response.cookies["sessionid"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert response.cookies["csrftoken"]["samesite"] == "Lax"


def test_session_and_csrf_cookies_are_secure_when_debug_is_off():
    probe = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY)"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("COOKIE_SECURE")}
    env |= {"DJANGO_SETTINGS_MODULE": "labelapp.settings", "DJANGO_DEBUG": "0"}
    env |= {"DJANGO_SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "example.org"}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True"]
