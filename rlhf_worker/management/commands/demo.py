"""manage.py demo: the whole loop on one machine: database, base model, web server and a worker.

The base model is the shipped SmolLM2-135M-Instruct (converted once); `--tiny` uses the
from-scratch 1.4M-parameter model instead. Round sizes and the training request of --simulate
are chosen so that a 2-core CPU reaches v2 and round 2 in minutes (docs/benchmarks.md).

Uses Redis at REDIS_URL when it answers, otherwise an embedded broker that needs no server
(kombu's filesystem transport in `.broker/`): a real worker process either way, not eager mode.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from labelapp.models import LabelingRound
from labelapp.services.tokens import issue_token

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers at `url` within a second."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.exceptions.RedisError, ValueError):
        return False


def wait_for_http(url: str, timeout: float) -> None:
    """Return once `url` answers at all (any HTTP status), or raise CommandError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 (our own local server)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise CommandError(f"the web server did not answer at {url} within {timeout:.0f} s")


def stop_demo(signum: int, frame: object) -> None:
    """SIGINT (Ctrl-C) and SIGTERM stop the demo, also where a shell started it with SIGINT
    ignored (a background job), which would otherwise leave it deaf to Ctrl-C."""
    raise KeyboardInterrupt


# What --simulate asks for on the real model, sized for a CPU: the reward model and PPO train
# their top 8 of 30 layers only, short rollouts, few steps (docs/benchmarks.md).
CPU_TRAINING = {
    "reward": {"epochs": 1, "batch_size": 4, "max_length": 384, "top_layers": 8},
    "steps": 4,
    "batch_size": 8,
    "mini_batch_size": 4,
    "ppo_epochs": 2,
    "max_new_tokens": 64,
    "top_layers": 8,
}
# Round 1's size: the real model writes round 2 (K answers per prompt) at ~65 tokens/s here.
DEFAULT_PROMPTS = {"real": 32, "tiny": 252}


class Command(BaseCommand):
    help = (
        "Run the demo: migrate, make the base model v1 (the shipped SmolLM2-135M-Instruct, or "
        "--tiny), seed users and round 1, then the web server and a Celery worker until Ctrl-C. "
        "--simulate also ranks round 1 with simulated labelers and starts training."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--base-model",
            default="",
            help="Register this model directory or hub id as v1 instead of the shipped one.",
        )
        parser.add_argument(
            "--tiny",
            action="store_true",
            help="Use the tiny from-scratch model (fastest; it writes nonsense).",
        )
        parser.add_argument(
            "--simulate",
            action="store_true",
            help="Rank round 1 with simulated labelers, then train it (PPO).",
        )
        parser.add_argument("--preference", default="shorter", help="The simulated preference.")
        parser.add_argument(
            "--prompts",
            type=int,
            default=None,
            help=f"Prompts in round 1 (default {DEFAULT_PROMPTS['real']}; "
            f"{DEFAULT_PROMPTS['tiny']} with --tiny).",
        )

    def handle(self, host, port, base_model, tiny, simulate, preference, prompts, **options):
        signal.signal(signal.SIGINT, stop_demo)
        signal.signal(signal.SIGTERM, stop_demo)
        env = self._child_env()
        call_command("migrate", verbosity=0)
        self._base_model(base_model, tiny, env)
        prompts = prompts or DEFAULT_PROMPTS["tiny" if tiny else "real"]
        call_command("seed_demo", prompts=prompts, stdout=self.stdout)
        url = f"http://{host}:{port}"
        children = [
            self._spawn([MANAGE, "run_worker", "--loglevel=WARNING"], env),
            self._spawn([MANAGE, "runserver", "--noreload", f"{host}:{port}"], env),
        ]
        try:
            wait_for_http(f"{url}/accounts/login/", timeout=60)
            self.stdout.write(
                self.style.SUCCESS(f"\nThe demo runs at {url}/  (log in with a login above)")
            )
            self.stdout.write(f"Admin console: {url}/console/   Django admin: {url}/admin/")
            self.stdout.write("Ctrl-C stops the web server and the worker.\n")
            sys.stdout.flush()
            if simulate:
                self._simulate(url, preference, {} if tiny else CPU_TRAINING)
            self._watch(children)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping the web server and the worker ...")
        finally:
            self._stop(children)
        self.stdout.write("Stopped.")

    def _child_env(self) -> dict:
        """The environment of the worker and web processes, with the broker they share."""
        env = dict(os.environ)
        broker = os.environ.get("CELERY_BROKER_URL")
        if broker:
            self.stdout.write(f"Broker: {broker} (CELERY_BROKER_URL)")
        elif redis_answers(settings.REDIS_URL):
            self.stdout.write(f"Broker: Redis at {settings.REDIS_URL}")
        else:
            env["CELERY_BROKER_URL"] = "filesystem://"
            folder = env.setdefault("BROKER_DIR", str(Path(settings.BASE_DIR) / ".broker"))
            self.stdout.write(
                f"Broker: no Redis at {settings.REDIS_URL}; using the embedded broker in {folder}. "
                f"manage.py commands in another shell need CELERY_BROKER_URL=filesystem:// "
                f"BROKER_DIR={folder}"
            )
        return env

    def _base_model(self, base_model: str, tiny: bool, env: dict) -> None:
        """Policy v1: the given model as it is, else the shipped or the tiny one (made once)."""
        argv = [sys.executable, MANAGE, "bootstrap_model"]
        if base_model:
            argv += ["--register-only", "--out", base_model]
        elif tiny:
            argv += ["--tiny"]
        # A child process: torch stays out of this supervisor, which lives as long as the demo.
        if subprocess.run(argv, env=env, check=False).returncode != 0:  # noqa: S603
            raise CommandError("bootstrap_model failed (see above)")

    def _spawn(self, args: list[str], env: dict) -> subprocess.Popen:
        # Its own session: Ctrl-C reaches only this supervisor, which stops the children in order.
        return subprocess.Popen([sys.executable, *args], env=env, start_new_session=True)  # noqa: S603

    def _simulate(self, url: str, preference: str, hyperparameters: dict) -> None:
        """Rank the labeling round through the API by `preference`, then train it with PPO."""
        round_ = LabelingRound.objects.filter(state=LabelingRound.State.LABELING).first()
        if round_ is None:
            self.stdout.write("No round is labeling: nothing to simulate.")
            return
        call_command(
            "simulate_labelers",
            round_number=round_.number,
            preference_name=preference,
            url=url,
            stdout=self.stdout,
        )
        token = issue_token(get_user_model().objects.get(username="admin"), name="demo")
        request = urllib.request.Request(  # noqa: S310 (our own local server)
            f"{url}/api/v1/rounds/{round_.pk}/train",
            data=json.dumps({"method": "ppo", **hyperparameters}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            run_id = json.loads(response.read())["training_run_id"]
        self.stdout.write(
            f"Training round {round_.number} with PPO (training run {run_id}); round "
            f"{round_.number + 1} appears when v2 has written it. Watch it at {url}/console/"
        )
        sys.stdout.flush()

    def _watch(self, children: list[subprocess.Popen]) -> None:
        """Wait until Ctrl-C or SIGTERM, or until a child dies on its own."""
        while True:
            for child in children:
                if child.poll() is not None:
                    raise CommandError(f"{child.args[2]} exited with status {child.returncode}")
            time.sleep(0.5)

    def _stop(self, children: list[subprocess.Popen]) -> None:
        """SIGTERM both; one still busy after 15 s is killed (the sweeper re-sends its step)."""
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
