"""The whole stack for real: PostgreSQL, Redis, a live web server and Celery worker processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.db import connection

import labelapp.queue
from tests.model_fixtures import tiny_model_dir, tiny_tokenizer  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")


def redis_answers() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=2).ping())
    except redis.exceptions.RedisError:
        return False


def require_stack() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the end-to-end tests run on PostgreSQL (DATABASE_URL=postgres://...)")
    if not redis_answers():
        pytest.fail(f"Redis does not answer at {REDIS_TEST_URL}")


@pytest.fixture
def broker(settings):
    """A clean Redis database as the broker of the web side and of the workers."""
    redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    settings.CELERY_BROKER_URL = REDIS_TEST_URL
    labelapp.queue._app = None  # the sending app is rebuilt with the test broker
    yield REDIS_TEST_URL
    labelapp.queue._app = None


class Workers:
    """Start and kill real `celery worker` processes on the test database and broker."""

    def __init__(self, env: dict, log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        log = open(self.log_dir / f"worker-{len(self.procs)}.log", "w")  # noqa: SIM115
        argv = [sys.executable, "-m", "celery", "-A", "rlhf_worker", "worker"]
        argv += ["-Q", "gpu,default", "--pool=solo", "--concurrency=1", "--loglevel=INFO"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.log_dir.glob("worker-*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture
def workers(broker, tmp_path, tiny_model_dir, settings):  # noqa: F811
    require_stack()
    db = connection.settings_dict
    artifacts = tmp_path / "artifacts"
    settings.ARTIFACTS_DIR = artifacts
    settings.BASE_MODEL = str(tiny_model_dir)
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": broker,
        "CELERY_BROKER_URL": broker,
        "ARTIFACTS_DIR": str(artifacts),
        "BASE_MODEL": str(tiny_model_dir),
        # A killed worker's task comes back after 5 s, and its run is taken over after 3 s of
        # silence; production keeps hours for both.
        "CELERY_VISIBILITY_TIMEOUT": "5",
        "TRAINING_STALE_SECONDS": "3",
        "OMP_NUM_THREADS": "2",
    }
    pool = Workers(env, tmp_path)
    yield pool
    pool.stop()


def wait_for(condition, timeout: float, what: str, workers: Workers | None = None):
    """Poll `condition()` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    logs = workers.logs() if workers else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")
