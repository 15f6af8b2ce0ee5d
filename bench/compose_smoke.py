"""`docker compose up` for real: build the images, run the whole stack, use it as a user would.

    .venv/bin/python bench/compose_smoke.py [--official] [--model tiny|real] [--keep]
    make compose-smoke

1. Starts the Docker engine when none answers (`dockerd` in the background).
2. Unless --official: builds the stand-in base images from Debian's packages
   (docker/standins/build.sh, cached) and points PYTHON_IMAGE, POSTGRES_IMAGE and REDIS_IMAGE at
   them; the worker gets the CPU build of torch from this machine's wheel folder, served to the
   build over HTTP (PIP_FIND_LINKS, TORCH_SPEC=torch==2.13.0+cpu).
3. Builds web and worker from the project's Dockerfile, `up -d` with generated settings, and
   waits for every healthcheck.
4. As a user: `bootstrap_model` and `seed_demo` in the containers, then over HTTP log in as a
   labeler (session + CSRF), rank round 1 through the API, log in as the admin and train it
   (PPO). While it trains, the postgres container is restarted and the worker container is
   killed and started again. Passes when round 2 is labeling, written by v2, with exactly one
   new policy version, and every ranking the API acknowledged is stored.
5. `down -v`, also on failure. A service that does not come up fails the run with its name and
   its last log lines.

Prints the time of each phase (build, up to healthy, labeling, training). --model tiny (the
default) trains the from-scratch tiny model, real the shipped SmolLM2 (much slower on a CPU).
"""

import argparse
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench.stack, when run as a script

from bench.stack import free_port  # noqa: E402

PROJECT = "rlhf-smoke"
SERVICES = ("postgres", "redis", "web", "worker", "worker-cpu")  # each with a healthcheck
PROMPTS = 8
WHEELS_PORT = 47381
TRAINING = {  # a small PPO round: the point is the plumbing, not the model
    "steps": 64,  # about 30 s on the tiny model: long enough to kill the worker in the middle
    "batch_size": 4,
    "mini_batch_size": 2,
    "ppo_epochs": 1,
    "max_new_tokens": 16,
    "reward": {"epochs": 1, "batch_size": 4},
}


class SmokeFailure(Exception):
    pass


def run(*argv: str, check: bool = True, capture: bool = False, **kwargs) -> str:
    done = subprocess.run(  # noqa: S603 (fixed tools, our own arguments)
        argv, cwd=ROOT, text=True, capture_output=capture, check=False, **kwargs
    )
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout or "")[-3000:] if capture else ""
        raise SmokeFailure(f"`{' '.join(argv)}` exited with {done.returncode}\n{detail}")
    return done.stdout if capture else ""


def answers(*argv: str) -> bool:
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0  # noqa: S603


def compose_tool() -> list[str]:
    if answers("docker", "compose", "version"):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise SmokeFailure("no compose tool: install the docker compose plugin or docker-compose")


def ensure_engine() -> None:
    if answers("docker", "info"):
        return
    log_path = Path(tempfile.gettempdir()) / "dockerd-smoke.log"
    print(f"starting dockerd in the background (log: {log_path})", flush=True)
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise SmokeFailure("no Docker engine answers and there is no dockerd to start")
    with log_path.open("a") as log:  # the daemon outlives this run
        subprocess.Popen(  # noqa: S603
            [dockerd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while not answers("docker", "info"):
        if time.monotonic() > deadline:
            raise SmokeFailure(f"dockerd did not answer within 60 s: see {log_path}")
        time.sleep(1)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def local_wheels() -> Path:
    """The folder that holds this machine's CPU torch wheel (pip's find-links)."""
    out = run(sys.executable, "-m", "pip", "config", "list", capture=True)
    for folder in re.findall(r"find-links='([^']+)'", out):
        if list(Path(folder).glob("torch-2.13.0+cpu-*.whl")):
            return Path(folder)
    raise SmokeFailure("no torch-2.13.0+cpu wheel in pip's find-links: use --official")


@contextmanager
def serve_wheels(folder: Path):
    """The wheel folder over HTTP on the Docker bridge, for the worker's build; yields its URL."""
    (config,) = json.loads(
        run("docker", "network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}", capture=True)
    )
    # The host's address on the bridge: the gateway, else the subnet's first address (docker0).
    gateway = config.get("Gateway") or str(ipaddress.ip_network(config["Subnet"])[1])
    # A fixed port when it is free: the URL is a build argument, and a new one each run would
    # make Docker rebuild the worker's dependencies every time.
    port = WHEELS_PORT if port_is_free(gateway, WHEELS_PORT) else free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "http.server", str(port), "--bind", gateway, "-d", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://{gateway}:{port}/"
    finally:
        server.terminate()
        server.wait(10)


class Stack:
    """The compose project: its commands, its health, its logs."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.base = [*compose_tool(), "-p", PROJECT]
        # compose reads these variables from its environment (which wins over any .env file):
        # this machine's own PIP_* settings must not reach the image builds.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | env
        self.url = f"http://127.0.0.1:{port}"

    def compose(self, *args: str, capture: bool = False, check: bool = True) -> str:
        return run(*self.base, *args, capture=capture, check=check, env=self.env)

    def manage(self, service: str, *args: str) -> str:
        return self.compose("exec", "-T", service, "python", "manage.py", *args, capture=True)

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service, capture=True).strip()

    def logs(self, service: str, lines: int = 40) -> str:
        return self.compose("logs", "--no-color", "--tail", str(lines), service, capture=True)

    def health(self, service: str) -> str:
        cid = self.container(service)
        if not cid:
            return "missing"
        template = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
        return run("docker", "inspect", "-f", template, cid, capture=True).strip()

    def wait_healthy(self, services=SERVICES, seconds: float = 300) -> None:
        deadline = time.monotonic() + seconds
        waiting = list(services)
        while waiting:
            states = {s: self.health(s) for s in waiting}
            for service, state in states.items():
                if state.startswith(("exited", "dead")) or state.endswith("unhealthy"):
                    self.fail(service, f"is {state}")
            waiting = [s for s, state in states.items() if state != "running healthy"]
            if waiting and time.monotonic() > deadline:
                self.fail(waiting[0], f"not healthy after {seconds:.0f} s ({states[waiting[0]]})")
            time.sleep(2)

    def fail(self, service: str, what: str) -> None:
        raise SmokeFailure(f"service {service} {what}; its last log lines:\n{self.logs(service)}")


class Client:
    """A signed-in browser session on the web container: login form, then the JSON API."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30, trust_env=False)
        form = self.http.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', form.text):  # whitenoise
            if (status := self.http.get(asset).status_code) != 200:
                raise SmokeFailure(f"{asset} answered {status}")
        done = self.http.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base_url}/accounts/login/"},
        )
        if "sessionid" not in self.http.cookies:
            raise SmokeFailure(f"login as {username} failed: {done.status_code}")

    def api(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        headers = {"X-CSRFToken": self.http.cookies.get("csrftoken", ""), "Referer": self.base}
        return self.http.request(method, f"/api/v1{path}", json=body, headers=headers)

    @property
    def base(self) -> str:
        return str(self.http.base_url)


def rank_round(labeler: Client) -> list[int]:
    """Rank every task of the open round through the API; the acknowledged ranking ids."""
    acknowledged = []
    while (task := labeler.api("GET", "/tasks/next")).status_code == 200:
        labels = [c["label"] for c in task.json()["completions"]]
        answer = labeler.api(
            "POST", f"/assignments/{task.json()['assignment_id']}/ranking", {"ranking": labels}
        )
        if answer.status_code != 201:
            raise SmokeFailure(f"ranking refused: {answer.status_code} {answer.text[:300]}")
        acknowledged.append(answer.json()["ranking_id"])
    return acknowledged


def wait_for(what: str, condition, seconds: float, stack: Stack, service: str = "worker"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(3)
    stack.fail(service, f"did not get {what} within {seconds:.0f} s")


def count(stack: Stack, expression: str) -> int:
    code = f"from labelapp.models import *; print({expression})"
    return int(stack.manage("web", "shell", "-c", code).strip().splitlines()[-1])


def smoke(args: argparse.Namespace, stack: Stack, timings: dict) -> None:
    started = time.monotonic()
    stack.compose("build")
    timings["build"] = time.monotonic() - started

    started = time.monotonic()
    stack.compose("up", "-d")
    stack.wait_healthy()
    timings["up to healthy"] = time.monotonic() - started

    started = time.monotonic()
    tiny = ["--tiny", "--pretrain-steps", "50"]  # a model that writes words is enough here
    stack.manage("worker", "bootstrap_model", *(tiny if args.model == "tiny" else []))
    seeded = stack.manage("web", "seed_demo", "--prompts", str(PROMPTS))
    logins = dict(re.findall(r"^\s+(\w+)\s+(\S+)$", seeded, re.M))
    labeler = Client(stack.url, "labeler1", logins["labeler1"])
    acknowledged = rank_round(labeler)
    timings["labeling"] = time.monotonic() - started
    print(f"ranked {len(acknowledged)} tasks through the API", flush=True)

    started = time.monotonic()
    admin = Client(stack.url, "admin", logins["admin"])
    (round_1,) = admin.api("GET", "/rounds").json()
    answer = admin.api("POST", f"/rounds/{round_1['id']}/train", {"method": "ppo", **TRAINING})
    if answer.status_code != 202:
        raise SmokeFailure(f"train refused: {answer.status_code} {answer.text[:300]}")
    run_id = answer.json()["training_run_id"]

    # Faults: PostgreSQL restarts while the reward model trains; the worker dies in PPO.
    stack.compose("restart", "postgres")
    stack.wait_healthy(["postgres"])

    def ppo_running() -> bool:
        if count(stack, "TrainingRun.objects.filter(kind='ppo', status='succeeded').count()"):
            raise SmokeFailure("PPO ended before the worker could be killed: raise TRAINING steps")
        return count(stack, "TrainingRun.objects.filter(kind='ppo', status='running').count()")

    wait_for("the PPO step running", ppo_running, 600, stack)
    run("docker", "kill", stack.container("worker"))
    print("restarted postgres; killed the worker in PPO; starting it again", flush=True)
    stack.compose("up", "-d", "worker")
    stack.wait_healthy(["worker"])

    def round_2():
        rounds = admin.api("GET", "/rounds").json()
        return next((r for r in rounds if r["number"] == 2 and r["state"] == "labeling"), None)

    following = wait_for("round 2 labeling", round_2, args.training_timeout, stack)
    timings["training"] = time.monotonic() - started
    versions = count(stack, "PolicyVersion.objects.count()")
    stored = count(stack, f"Ranking.objects.filter(pk__in={acknowledged}).count()")
    print(
        f"run {run_id}: round 2 is labeling, written by v{following['policy_version']}; "
        f"{versions} policy versions; {stored} of {len(acknowledged)} acknowledged rankings "
        "stored",
        flush=True,
    )
    if following["policy_version"] != 2 or versions != 2 or stored != len(acknowledged):
        raise SmokeFailure("after the faults: not exactly one new version, or a ranking lost")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", action="store_true", help="The official base images.")
    parser.add_argument("--model", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--training-timeout", type=float, default=1800)
    parser.add_argument("--keep", action="store_true", help="Leave the stack up at the end.")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="The workers' TORCH_THREADS (a shared host)."
    )
    args = parser.parse_args()

    timings: dict[str, float] = {}
    ensure_engine()
    port = free_port()
    env = {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_SUPERUSER_USERNAME": "",  # seed_demo makes the admin (and prints the logins)
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
        "WEB_PORT": str(port),
        "CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{port}",
        "BASE_MODEL": "/artifacts/tiny-base-model" if args.model == "tiny" else "",
        "TORCH_THREADS": str(args.torch_threads),
        # A killed worker's step is sent again after 30 s without a heartbeat, at least 30 s
        # after it was last sent (by default 5 and 10 minutes).
        "TRAINING_STALE_SECONDS": "30",
        "TRAINING_RESEND_SECONDS": "30",
        "SWEEP_INTERVAL_SECONDS": "10",
    }
    with contextmanager(_wheels)(args) as find_links:
        if not args.official:
            started = time.monotonic()
            run("sh", "docker/standins/build.sh")
            timings["stand-ins"] = time.monotonic() - started
            env |= {
                "PYTHON_IMAGE": "rlhf-standin/python:bookworm",
                "POSTGRES_IMAGE": "rlhf-standin/postgres:bookworm",
                "REDIS_IMAGE": "rlhf-standin/redis:bookworm",
                "TORCH_SPEC": "torch==2.13.0+cpu",
                "PIP_FIND_LINKS": find_links,
                "PIP_TRUSTED_HOST": httpx.URL(find_links).host,
            }
        stack = Stack({k: v for k, v in env.items() if v}, port)
        try:
            smoke(args, stack, timings)
            result = 0
        except SmokeFailure as exc:
            print(f"FAILED: {exc}", flush=True)
            result = 1
        finally:
            if not args.keep:
                stack.compose("down", "-v", check=False)
    print(json.dumps({k: round(v, 1) for k, v in timings.items()}))
    print("RESULT:", "OK" if result == 0 else "FAILED")
    return result


def _wheels(args: argparse.Namespace):
    if args.official:
        yield ""
    else:
        with serve_wheels(local_wheels()) as url:
            yield url


if __name__ == "__main__":
    os.environ.setdefault("DOCKER_BUILDKIT", "0")  # the engine's own builder: no buildx here
    sys.exit(main())
