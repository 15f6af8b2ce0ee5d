"""Headers, settings and the boundary rules that hold from day one."""

import os
import subprocess
import sys
from pathlib import Path

from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


def test_pages_send_a_strict_csp_without_inline_script(labeler, labeling_round):
    client = Client()
    client.force_login(labeler)
    response = client.get("/label/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    page = response.content.decode()
    assert "<script>" not in page and " on" + "click=" not in page
    assert '<script src="/static/label/label.js" defer></script>' in page


def test_the_secret_key_is_required_when_debug_is_off():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env["DJANGO_DEBUG"] = "0"
    run = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in run.stderr
    env["DJANGO_SECRET_KEY"] = "x" * 50
    env["ALLOWED_HOSTS"] = "example.org"
    run = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def test_a_bad_boolean_setting_fails_loudly():
    env = {**os.environ, "DJANGO_DEBUG": "maybe"}
    run = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode != 0 and "DJANGO_DEBUG='maybe' is not a boolean" in run.stderr


def test_labelapp_never_imports_ml_libraries():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "labelapp").rglob("*.py")
        for line in path.read_text().splitlines()
        if line.lstrip().startswith(
            ("import torch", "from torch", "import transformers", "from trl")
        )
    ]
    assert offenders == []
