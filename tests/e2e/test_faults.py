"""Faults against a real gunicorn: the database or the broker cut, a worker killed after COMMIT.

Each test runs gunicorn as bench/load_labelers.py does, on the test database. Outages are made
with a TCP proxy between this gunicorn and the real service (tests/e2e/tcp_proxy.py), so the
PostgreSQL and Redis that other tests use are never stopped. bench/faults.py restarts the real
services under load.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
import redis
from django.db import connection
from django.test import Client

import labelapp.queue
from bench.stack import free_port, start_gunicorn, stop, wait_ready
from bench.stack import site_env as stack_env
from labelapp.access import ADMINS, LABELERS
from labelapp.middleware import MESSAGE
from labelapp.models import Comparison, Ranking, TrainingRun
from labelapp.services.tokens import issue_token
from labelapp.services.training import resend_stuck_runs
from tests.conftest import make_round, make_user
from tests.e2e.conftest import REDIS_TEST_URL, require_stack
from tests.e2e.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# Not the e2e tests' Redis database: their fixtures flush it and their workers consume it.
FAULTS_REDIS_URL = REDIS_TEST_URL.rsplit("/", 1)[0] + "/14"
RANKING = ["B", "A", "D", "C"]


def require_postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the fault tests run on PostgreSQL (DATABASE_URL=postgres://...)")


def site_env(db_port: int | None = None, **extra: str) -> dict:
    """gunicorn's environment: the test database (at `db_port`, e.g. a proxy's), DEBUG off."""
    db = connection.settings_dict
    port = db_port or db["PORT"] or 5432
    url = f"postgres://{db['USER']}@127.0.0.1:{port}/{db['NAME']}"
    return stack_env(url, DJANGO_SECRET_KEY="fault-tests-only", **extra)


@contextmanager
def gunicorn(env: dict, log_path: Path) -> Iterator[tuple[psutil.Process, str]]:
    """One gunicorn worker with two threads; yields its master process and base URL."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        server = start_gunicorn(SimpleNamespace(workers=1, threads=2), port, env, log)
        try:
            wait_ready(server, base_url)
            yield psutil.Process(server.pid), base_url
        finally:
            stop(server)


def api_client(base_url: str, user) -> httpx.Client:
    token = issue_token(user)
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=base_url, headers=headers, timeout=30, trust_env=False)


def ranking_url(task: dict) -> str:
    return f"/api/v1/assignments/{task['assignment_id']}/ranking"


def workers_of(master: psutil.Process) -> list[int]:
    return sorted(child.pid for child in master.children())


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {"detail": MESSAGE}
    assert response.headers["Retry-After"] == "5"


def assert_stored_once(assignment_id: int, ranking_id: int) -> None:
    """One Ranking for the assignment, the one acknowledged, with its C(4,2) comparisons."""
    assert list(
        Ranking.objects.filter(assignment_id=assignment_id).values_list("pk", flat=True)
    ) == [ranking_id]
    assert Comparison.objects.filter(ranking_id=ranking_id).count() == 6


def test_a_database_outage_answers_503_saves_nothing_and_the_same_server_recovers(tmp_path):
    require_postgres()
    make_round(n_prompts=3)
    labeler = make_user("alice", LABELERS)
    db = connection.settings_dict
    proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)).start()
    # A browser session, written to the database before the outage.
    browser = Client()
    browser.force_login(labeler)
    session = browser.cookies["sessionid"].value
    try:
        with gunicorn(site_env(proxy.port), tmp_path / "gunicorn.log") as (master, base_url):
            api = api_client(base_url, labeler)
            first = api.get("/api/v1/tasks/next").json()
            assert api.post(ranking_url(first), json={"ranking": RANKING}).status_code == 201
            second = api.get("/api/v1/tasks/next").json()
            workers = workers_of(master)

            proxy.cut()
            assert_unavailable(api.get("/api/v1/tasks/next"))
            assert_unavailable(api.post(ranking_url(second), json={"ranking": RANKING}))
            page = httpx.get(f"{base_url}/label/", cookies={"sessionid": session}, trust_env=False)
            assert page.status_code == 503 and page.headers["Retry-After"] == "5"
            assert page.headers["Content-Type"].startswith("text/html") and MESSAGE in page.text
            assert not Ranking.objects.filter(assignment_id=second["assignment_id"]).exists()

            proxy.restore()
            retried = api.post(ranking_url(second), json={"ranking": RANKING})
            assert retried.status_code == 201, retried.text
            again = api.post(ranking_url(second), json={"ranking": RANKING})
            assert again.status_code == 200 and again.json() == retried.json()
            assert api.get("/api/v1/tasks/next").status_code == 200
            assert workers_of(master) == workers  # recovered without a restart
        assert_stored_once(second["assignment_id"], retried.json()["ranking_id"])
    finally:
        proxy.cut()


def test_a_worker_killed_between_commit_and_response_gives_the_same_ranking_on_retry(tmp_path):
    require_postgres()
    make_round(n_prompts=2)
    labeler = make_user("alice", LABELERS)
    crash_once = tmp_path / "crash-once"
    crash_once.touch()
    env = site_env(
        DJANGO_SETTINGS_MODULE="tests.e2e.crash_settings", CRASH_ONCE_FILE=str(crash_once)
    )
    with gunicorn(env, tmp_path / "gunicorn.log") as (master, base_url):
        api = api_client(base_url, labeler)
        task = api.get("/api/v1/tasks/next").json()
        workers = workers_of(master)

        with pytest.raises(httpx.TransportError):
            api.post(ranking_url(task), json={"ranking": RANKING})
        assert not crash_once.exists()
        committed = Ranking.objects.get(assignment_id=task["assignment_id"])

        # The client retries the same submit; gunicorn has started a new worker for it.
        retried = api.post(ranking_url(task), json={"ranking": RANKING})
        assert retried.status_code == 200, retried.text
        assert retried.json() == {"ranking_id": committed.pk, "comparisons": 6}
        assert workers_of(master) != workers
    assert_stored_once(task["assignment_id"], committed.pk)


@pytest.fixture
def broker_db(settings) -> Iterator[redis.Redis]:
    """An empty Redis database of its own as this process's broker, emptied afterwards."""
    client = redis.Redis.from_url(FAULTS_REDIS_URL)
    client.flushdb()
    settings.CELERY_BROKER_URL = FAULTS_REDIS_URL
    labelapp.queue._app = None  # the sending app is rebuilt with this broker
    yield client
    labelapp.queue._app = None
    client.flushdb()


def test_labeling_works_and_training_is_accepted_while_redis_is_down(
    tmp_path, broker_db, settings, django_capture_on_commit_callbacks
):
    require_stack()
    round_ = make_round(n_prompts=2)
    labeler, admin = make_user("alice", LABELERS), make_user("root", ADMINS)
    redis_url = urlsplit(FAULTS_REDIS_URL)
    proxy = TcpProxy(redis_url.hostname, redis_url.port or 6379).start()
    via_proxy = f"redis://127.0.0.1:{proxy.port}{redis_url.path}"
    env = site_env(REDIS_URL=via_proxy, CELERY_BROKER_URL=via_proxy)
    try:
        with gunicorn(env, tmp_path / "gunicorn.log") as (_, base_url):
            proxy.cut()
            api = api_client(base_url, labeler)
            task = api.get("/api/v1/tasks/next")
            assert task.status_code == 200
            ranked = api.post(ranking_url(task.json()), json={"ranking": RANKING})
            assert ranked.status_code == 201

            body = {"method": "ppo", "steps": 1}
            train = api_client(base_url, admin).post(f"/api/v1/rounds/{round_.pk}/train", json=body)
            assert train.status_code == 202, train.text
    finally:
        proxy.cut()

    # The run is in the database, marked sent, but the broker never got it...
    run = TrainingRun.objects.get(pk=train.json()["training_run_id"])
    assert (run.status, run.kind) == ("queued", "reward") and run.sent_at is not None
    assert broker_db.llen("gpu") == 0
    # ...so once Redis answers, the sweeper sends it (no worker could have taken it meanwhile).
    settings.TRAINING_RESEND_SECONDS = 0
    with django_capture_on_commit_callbacks(execute=True):
        assert resend_stuck_runs() == [run.pk]
    assert broker_db.llen("gpu") == 1
