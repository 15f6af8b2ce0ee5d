"""Label Studio as the other stack of bench/load_labelers.py (issue 7, "side by side").

Label Studio 1.23.2 lives in its own venv, bench/.venv-labelstudio (installed from
bench/requirements-labelstudio.txt), because it pins its own Django stack. This file runs in two
interpreters:

- imported by load_labelers.py (the project's venv): Label Studio's environment and settings,
  its gunicorn, the project and task import through its API, and the check of its database
  against the client's log (plain SQL through psycopg);
- run as a script by bench/.venv-labelstudio/bin/python (`setup`): migrate Label Studio's
  database and create the organization and users with its own ORM; prints their API tokens as
  JSON. Nothing of Label Studio is imported at module level, so both work.

How Label Studio is set up, and why:
- PostgreSQL through its own variables (DJANGO_DB=default, POSTGRE_*), its own database.
- Settings: its `core.settings.label_studio` (what `label-studio start` uses), plus two changes
  in a settings module written at run time. Its RQ queues are hard-wired to localhost:6379,
  and a Redis of this project listens there, with no RQ worker for Label Studio's queues: jobs
  sent there would never run (work silently skipped), so the queues point at a closed port and
  `start_job_async_or_sync` runs them in the request, as in the open-source release ("OSS
  version does not support Redis"; its Docker image has none).
- Its Django's CONN_MAX_AGE is 0 (a PostgreSQL connection per request); the benchmark sets it
  to 60 by default, as ours (--ls-conn-max-age): the same connection reuse for both stacks, and
  the CPU of Label Studio's PostgreSQL backends can be counted (closed ones cannot).
- Sentry off (SENTRY_DSN empty) and no check for a newer release on PyPI (LATEST_VERSION_CHECK):
  no network here, and neither is part of labeling.
- API tokens: the legacy `Authorization: Token <key>` tokens, enabled for the organization
  (`legacy_api_tokens_enabled`, what `label-studio start --enable-legacy-api-token` does). Its
  JWT personal access tokens are refresh tokens that have to be exchanged for 5-minute access
  tokens, which a load client would have to renew mid-run; the legacy token is one indexed
  lookup per request, no dearer than a JWT check plus the user lookup Label Studio does with it.
- Labelers are plain members of the organization (the open-source release has no roles); the
  project keeps its defaults: sequential sampling, one annotation per task (overlap 1, as
  ours), task locks so two labelers do not get the same task.
- The labeling config is its "LLM Ranker" template reduced to a ranking of the 4 answers
  (List + Ranker without buckets): the result is {"ranker": {"answers": [ids in order]}}.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "bench" / ".venv-labelstudio"
PYTHON = VENV / "bin" / "python"
IMPORT_BATCH = 2_000  # tasks per import request (about 3 MB of JSON)

LABEL_CONFIG = """<View>
  <Header value="Rank the answers, best first"/>
  <Text name="prompt" value="$prompt"/>
  <List name="answers" value="$items" title="Answers"/>
  <Ranker name="rank" toName="answers"/>
</View>"""

SETTINGS_MODULE = "bench_labelstudio_settings"
SETTINGS_TEXT = """\
# Written by bench/labelstudio.py for one run: Label Studio's own settings, RQ on a closed port.
import os

# Its settings read django.conf.settings while they load (Sentry, versions): let that nested
# read find its own module, as it does when DJANGO_SETTINGS_MODULE names it.
os.environ['DJANGO_SETTINGS_MODULE'] = 'core.settings.label_studio'
from core.settings.label_studio import *  # noqa: E402, F403

os.environ['DJANGO_SETTINGS_MODULE'] = __name__

for _queue in RQ_QUEUES.values():  # noqa: F405
    _queue['HOST'], _queue['PORT'] = '127.0.0.1', {port}
DATABASES['default']['CONN_MAX_AGE'] = {conn_max_age}  # noqa: F405 (its default: 0)
"""


def missing() -> str | None:
    """Why Label Studio cannot run here, or None."""
    if not PYTHON.exists():
        return (
            f"no {PYTHON.relative_to(ROOT)}: install it as bench/requirements-labelstudio.txt says"
        )
    return None


def package_dir() -> Path:
    """Label Studio's package folder in its venv: its Django project root (core.wsgi is there)."""
    found = sorted(VENV.glob("lib/python3*/site-packages/label_studio"))
    if not found:
        raise RuntimeError(f"label_studio is not installed in {VENV}")
    return found[0]


def closed_port() -> int:
    """A loopback port that nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(database_url: str, data_dir: Path, conn_max_age: int = 0) -> dict:
    """Label Studio's environment for the setup and for gunicorn. conn_max_age: its Django's
    CONN_MAX_AGE (0, its default, opens a PostgreSQL connection per request)."""
    import psycopg

    params = psycopg.conninfo.conninfo_to_dict(database_url)
    settings = SETTINGS_TEXT.format(port=closed_port(), conn_max_age=int(conn_max_age))
    (data_dir / f"{SETTINGS_MODULE}.py").write_text(settings)
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {
        **{k: os.environ[k] for k in keep if k in os.environ},
        "DJANGO_DB": "default",
        "POSTGRE_NAME": params["dbname"],
        "POSTGRE_USER": params.get("user", "postgres"),
        "POSTGRE_PASSWORD": params.get("password", ""),
        "POSTGRE_HOST": params.get("host", "127.0.0.1"),
        "POSTGRE_PORT": str(params.get("port", 5432)),
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        # Not its package folder: that holds a sitecustomize.py for its test coverage. gunicorn
        # runs in that folder (its app is core.wsgi there); the setup adds it to sys.path.
        "PYTHONPATH": str(data_dir),
        "BASE_DATA_DIR": str(data_dir),
        "SENTRY_DSN": "",
        "LATEST_VERSION_CHECK": "false",  # else each worker asks PyPI for a newer release
        "FRONTEND_SENTRY_DSN": "",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "PYTHONUNBUFFERED": "1",
    }


def setup(env: dict, n_labelers: int) -> dict:
    """Migrate Label Studio's (empty) database and create its users, in its own interpreter."""
    started = time.perf_counter()
    result = subprocess.run(  # noqa: S603 (our own interpreter path and arguments)
        [str(PYTHON), __file__, "setup", str(n_labelers)],
        cwd=package_dir(),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    lines = result.stdout.splitlines()
    if result.returncode != 0 or not lines or not lines[-1].startswith("{"):
        raise RuntimeError(
            f"Label Studio setup failed ({result.returncode}):\n{result.stdout[-2000:]}"
            f"\n{result.stderr[-4000:]}"
        )
    out = json.loads(lines[-1])
    out["seconds"] = time.perf_counter() - started
    return out


APP = "core.wsgi:application"  # its WSGI app, run from package_dir() (as its Docker image does)


def create_project(base_url: str, admin_token: str, tasks: list[dict]) -> tuple[int, float]:
    """The ranking project and its tasks, through Label Studio's API; (project id, seconds)."""
    import httpx

    started = time.perf_counter()
    headers = {"Authorization": f"Token {admin_token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=600, trust_env=False) as client:
        response = client.post(
            "/api/projects/",
            json={"title": "Load test: rank 4 answers", "label_config": LABEL_CONFIG},
        )
        if response.status_code != 201:
            raise RuntimeError(f"project: {response.status_code} {response.text[:500]}")
        project = response.json()["id"]
        for start in range(0, len(tasks), IMPORT_BATCH):
            batch = tasks[start : start + IMPORT_BATCH]
            response = client.post(f"/api/projects/{project}/import", json=batch)
            if response.status_code != 201 or response.json().get("task_count") != len(batch):
                raise RuntimeError(f"import: {response.status_code} {response.text[:500]}")
    return project, time.perf_counter() - started


def task_data(prompt_id: int, prompt: str, answers: list[tuple[str, str]]) -> dict:
    """One task: the prompt and its answers as the List tag reads them (id, title, body)."""
    items = [{"id": label, "title": label, "body": text} for label, text in answers]
    return {"data": {"prompt_id": prompt_id, "prompt": prompt, "items": items}}


def ranking_result(order: list[str]) -> list[dict]:
    """The annotation result of a Ranker over the List "answers", best first."""
    return [
        {
            "from_name": "rank",
            "to_name": "answers",
            "type": "ranker",
            "origin": "manual",
            "value": {"ranker": {"answers": order}},
        }
    ]


NOUNS = ("annotations", "tasks", "tasks annotated by more than one labeler")


def stored_annotations(database_url: str, project: int) -> tuple[dict, int, int]:
    """From Label Studio's database: each annotation of the project as (task, labeler, order
    ranked, skipped), the tasks annotated by more than one labeler, and the (task, labeler) pairs
    annotated more than once (load_labelers.verify_labelstudio compares them with the log)."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, task_id, completed_by_id, result, was_cancelled FROM task_completion"
            " WHERE project_id = %s",
            (project,),
        ).fetchall()
        (over_overlap,) = conn.execute(
            "SELECT count(*) FROM (SELECT task_id FROM task_completion WHERE project_id = %s"
            " AND NOT was_cancelled GROUP BY task_id HAVING count(DISTINCT completed_by_id) > 1) t",
            (project,),
        ).fetchone()
        (twice,) = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM task_completion WHERE project_id = %s"
            " GROUP BY task_id, completed_by_id HAVING count(*) > 1) t",
            (project,),
        ).fetchone()

    def order(result):
        try:
            return result[0]["value"]["ranker"]["answers"]
        except (IndexError, KeyError, TypeError):
            return None

    stored = {pk: (task, user, order(result), skipped) for pk, task, user, result, skipped in rows}
    return stored, over_overlap, twice


def _setup_in_label_studio(n_labelers: int) -> None:
    """(Label Studio's interpreter) migrate, then an admin and n labelers in one organization."""
    sys.path.insert(0, os.getcwd())  # Label Studio's package folder (see setup())
    import django

    django.setup()
    from django.core.management import call_command
    from organizations.functions import create_organization
    from users.models import User

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    migrated = time.perf_counter() - started
    admin = User.objects.create_superuser(email="admin@load.test", password=None)
    org = create_organization(title="Load test", created_by=admin, legacy_api_tokens_enabled=True)
    labelers = []
    for i in range(n_labelers):
        user = User.objects.create_user(email=f"load{i:03d}@load.test", password=None)
        org.add_user(user)
        labelers.append(user)
    for user in [admin, *labelers]:
        user.active_organization = org
        user.save(update_fields=["active_organization"])
    org.jwt.legacy_api_tokens_enabled = True
    org.jwt.save()
    from importlib.metadata import version

    import label_studio
    from django import get_version

    print(
        json.dumps(
            {
                "migrate_seconds": migrated,
                "admin_token": admin.get_token().key,
                "labelers": [[u.pk, u.get_token().key] for u in labelers],
                "label_studio": label_studio.__version__,
                "django": get_version(),
                "gunicorn": version("gunicorn"),
                "python": sys.version.split()[0],
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "setup":
        _setup_in_label_studio(int(sys.argv[2]))
    else:
        sys.exit(f"usage: {PYTHON} {__file__} setup N_LABELERS")
