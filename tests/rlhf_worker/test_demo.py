"""manage.py demo without Redis: the embedded broker, a real worker, and a clean stop."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; demo output:\n{log.read_text()[-4000:]}")


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=20) as conn:
        return conn.execute(sql).fetchall()


def test_demo_generates_a_round_on_the_embedded_broker_and_stops_cleanly(tmp_path, tiny_model_dir):
    db, log = tmp_path / "demo.sqlite3", tmp_path / "demo.log"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens there: no Redis
        "BROKER_DIR": str(tmp_path / "broker"),
        "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "DJANGO_DEBUG": "1",
    }
    env.pop("CELERY_BROKER_URL", None)
    port = free_port()
    argv = [sys.executable, "manage.py", "demo", "--port", str(port), "--prompts", "4"]
    argv += ["--base-model", str(tiny_model_dir)]
    with log.open("w") as out:
        # Started the way a shell starts a background job, with SIGINT ignored: Ctrl-C (SIGINT)
        # must stop it all the same.
        demo = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        wait_until(lambda: "The demo runs at" in log.read_text(), 90, "the site", log)
        output = log.read_text()
        assert "using the embedded broker" in output
        assert "admin" in output and "labeler1" in output  # the logins are printed
        children = psutil.Process(demo.pid).children()
        assert len(children) == 2  # the worker and the web server

        subprocess.run(
            [
                sys.executable,
                "manage.py",
                "create_round",
                "--prompts",
                "2",
                "--max-new-tokens",
                "8",
            ],
            cwd=ROOT,
            env={**env, "CELERY_BROKER_URL": "filesystem://"},  # as the demo tells a 2nd shell
            check=True,
            capture_output=True,
        )
        wait_until(
            lambda: (
                query(db, "SELECT state FROM labelapp_labelinground WHERE number = 2")
                == [("labeling",)]
            ),
            90,
            "round 2's completions from the worker",
            log,
        )
        generated = query(
            db,
            "SELECT count(*) FROM labelapp_completion c JOIN labelapp_labelinground r "
            "ON c.round_id = r.id WHERE r.number = 2 AND c.policy_version_id IS NOT NULL",
        )
        assert generated == [(8,)]  # 2 prompts x K=4, written by policy v1

        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=40) == 0
        assert "Stopped." in log.read_text()
        assert not any(child.is_running() for child in children)
    finally:
        if demo.poll() is None:
            demo.kill()
