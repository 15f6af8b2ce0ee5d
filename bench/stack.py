"""The benchmarks' shared pieces: the stack on loopback (a fresh database, gunicorn, a Celery
worker), their environment, and reporting. Each bench script shows only what it measures."""

import argparse
import contextlib
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]


def recreate_database(url: str) -> None:
    """Drop and create the benchmark's database, so every run starts from the same state."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    name = params.pop("dbname")
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        database = sql.Identifier(name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(database))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(
    args, port: int, env: dict, logfile, *, python=sys.executable, app="labelapp.wsgi", cwd=ROOT
) -> subprocess.Popen:
    """gunicorn serving `app` (ours by default) in a session of its own: stop() ends the group."""
    command = [
        str(python), "-m", "gunicorn", app,
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(args.workers),
        "--worker-class", "gthread" if args.threads > 1 else "sync",
        "--threads", str(args.threads),
        "--keep-alive", "120",  # open-loop gaps between one labeler's loops can last seconds
        "--timeout", "30",
        "--log-level", "warning",
        "--no-control-socket",  # gunicorn 27's default socket path is shared by every instance
    ]  # fmt: skip
    # Our own interpreter (or Label Studio's venv's) and arguments, no shell.
    return subprocess.Popen(  # noqa: S603
        command, cwd=cwd, env=env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_ready(
    server: subprocess.Popen,
    base_url: str,
    seconds: float = 60,
    path: str = "/api/v1/tasks/next",
    status: int = 401,
    workers: int = 1,
) -> None:
    """Until the app answers `path` with `status` (by default an anonymous next-task call: a 401
    from our Django itself) and all `workers` have been forked: the first worker answers before
    the last is forked, and a load started then would leave the late ones without connections
    (each keep-alive connection stays with the worker that accepted it)."""
    deadline = time.monotonic() + seconds
    master = psutil.Process(server.pid)
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            response = httpx.get(f"{base_url}{path}", timeout=2, trust_env=False)
            if response.status_code == status and len(master.children()) >= workers:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within {seconds:.0f} s")


def stop(server: subprocess.Popen) -> None:
    """Stop gunicorn and whatever is left of its process group (started by start_gunicorn)."""

    def signal_group(sig) -> None:
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone
            os.killpg(server.pid, sig)

    signal_group(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(20)
    signal_group(signal.SIGKILL)  # workers that outlived their master, or a master that hung
    server.wait(10)


def percentile(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    return sorted_ms[max(0, math.ceil(p / 100 * len(sorted_ms)) - 1)] if sorted_ms else float("nan")


def site_env(database_url: str, **extra: str) -> dict:
    """The environment our gunicorn (and a worker) runs in: DEBUG off, as in production."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "labelapp.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


class Gunicorn:
    """gunicorn as bench/load_labelers.py starts it, with its log in a file."""

    def __init__(self, args: argparse.Namespace, env: dict, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log_path.open("w")
        self.server = start_gunicorn(args, self.port, env, self.log)
        wait_ready(self.server, self.base_url, workers=args.workers)

    def workers(self) -> list[int]:
        return sorted(p.pid for p in psutil.Process(self.server.pid).children())

    def stop(self) -> None:
        stop(self.server)
        self.log.close()


class Worker:
    """`manage.py run_worker` (a Celery worker with the sweeper), in its own process group."""

    def __init__(self, env: dict, log_path: Path) -> None:
        self.log = log_path.open("a")
        argv = [sys.executable, "manage.py", "run_worker"]
        self.proc = subprocess.Popen(  # noqa: S603 (our own interpreter, fixed arguments)
            argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the worker and its beat process, as a crashed host or container would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def print_table(rows: list[dict]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
