"""Deployment: the compose files, the production settings and what the README says about them."""

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "label.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://label.example.org",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
}


def compose_tool() -> list[str]:
    """`docker compose` (the plugin), else Debian's `docker-compose` (`make compose-deps`)."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.fail("no compose tool: run `make compose-deps`")


def compose_config(*files: str) -> dict:
    argv = [*compose_tool(), *(arg for f in files for arg in ("-f", f)), "config"]
    env = {**os.environ, "DJANGO_SECRET_KEY": "test-only"}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def readme_services() -> dict[str, str]:
    """The service table of README's deploy section: {service: documented command}."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploy with docker compose", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([\w-]+)` \| [^|]+ \| (.+) \|$", section, flags=re.M)
    return {name: re.findall(r"`([^`]+)`", cell) for name, cell in rows}


def test_compose_files_are_valid():
    assert compose_config("docker-compose.yml")["services"]
    gpu = compose_config("docker-compose.yml", "docker-compose.gpu.yml")["services"]["worker"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"


def test_every_service_the_readme_names_exists_with_its_documented_command():
    services = compose_config("docker-compose.yml")["services"]
    documented = readme_services()
    assert set(documented) == set(services)
    for name, spec in services.items():
        if "command" in spec:
            command = spec["command"]
        elif "build" in spec:  # the image's CMD
            stage = (
                dockerfile().split(f"AS {spec['build']['target']}\n", 1)[1].split("\nFROM ", 1)[0]
            )
            command = yaml.safe_load(re.search(r"^CMD (\[.*\])$", stage, flags=re.M)[1])
        else:
            continue  # an upstream image's own command
        shown = " ".join(command[2:] if command[:2] == ["sh", "-c"] else command)
        assert any(shlex.split(doc) == shlex.split(shown) for doc in documented[name]), name


def test_only_the_workers_get_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    web = " ".join(project["dependencies"]).lower()
    assert not re.search(r"\b(torch|transformers|trl|accelerate|peft)\b", web)
    assert "torch==" in " ".join(project["optional-dependencies"]["worker"])
    stages = dict(
        re.findall(r"^FROM \S+ AS (\S+)\n(.*?)(?=^FROM |\Z)", dockerfile(), flags=re.M | re.S)
    )
    assert re.search(r"^FROM base AS web$", dockerfile(), flags=re.M)  # web = base + the code
    web_stage = stages["base"] + stages["web"]
    instructions = "\n".join(x for x in web_stage.splitlines() if not x.startswith("#"))
    assert "torch" not in instructions and "[worker]" not in instructions
    # The web process never imports torch: every labelapp module loads without it.
    probe = (
        "import django, importlib, pkgutil, sys; django.setup(); import labelapp;"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(labelapp.__path__, "
        "'labelapp.') if '.migrations.' not in m.name];"
        "from django.urls import resolve; resolve('/');"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'trl')))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "labelapp.settings"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().strip() == "[]"


def test_check_deploy_is_clean_with_production_settings():
    # Without what the browser tests set for themselves (async-unsafe ORM calls).
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"} | PRODUCTION
    argv = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = {**os.environ, **PRODUCTION, "DJANGO_SECRET_KEY": ""}
    argv = [sys.executable, "manage.py", "check"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in done.stderr


def test_every_setting_is_in_env_example_and_passed_by_compose():
    settings_py = (ROOT / "labelapp" / "settings.py").read_text()
    read = set(re.findall(r'env(?:bool|int|list|secret)?\("([A-Z_]+)"', settings_py))
    read |= set(re.findall(r'os\.environ\.get\("([A-Z_]+)"', settings_py))
    example = set(re.findall(r"^#? ?([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    set_by_compose = {"DATABASE_URL", "REDIS_URL", "ARTIFACTS_DIR"}  # fixed in the compose file
    local_only = {"BROKER_DIR", "CELERY_BROKER_URL", "STATIC_ROOT"}  # the demo, the image build
    assert read - example - set_by_compose - local_only == set()
    compose_env = compose_config("docker-compose.yml")["services"]["web"]["environment"]
    assert read - set(compose_env) - local_only == set()


def test_gunicorn_preloads_the_app_and_freezes_it_out_of_the_collector(tmp_path):
    """gunicorn.conf.py's when_ready, run as gunicorn runs it in the master after preloading the
    app: the URLconf is loaded, the master's database connection is closed before the workers
    are forked, and what the master holds is frozen (gc.freeze)."""
    probe = (
        "import gc, runpy, sys, django; django.setup();"
        "from django.db import connection; connection.ensure_connection();"
        "conf = runpy.run_path('gunicorn.conf.py'); unfrozen = len(gc.get_objects());"
        "conf['when_ready'](None);"
        "print(conf['preload_app'], 'labelapp.api' in sys.modules, connection.connection is None,"
        " unfrozen, gc.get_freeze_count(), len(gc.get_objects()))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "labelapp.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'probe.sqlite3'}",
    }
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    preload, urls_loaded, closed, before, frozen, after = out.stdout.decode().split()
    assert (preload, urls_loaded, closed) == ("True", "True", "True")
    assert int(frozen) > int(before) and int(after) < 1000
