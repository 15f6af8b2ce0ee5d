"""Faults under load (issue 7): PostgreSQL and Redis really restarted, a worker killed in PPO.

The real stack on loopback (gunicorn + PostgreSQL + Redis + a Celery worker with the sweeper),
built from bench/load_labelers.py's pieces. Four phases, each bounded in time:

- postgres: simulated labelers loop "next task -> submit" while PostgreSQL is stopped and
  started again (pg_ctlcluster). Counted: 503s while it is down, any other 5xx or dropped
  connection, half-written rankings, and how soon after PostgreSQL is back the same gunicorn
  (no worker restarted) answers again.
- redis-labeling: the same load while Redis is restarted (it keeps nothing on disk): labeling
  must not notice. The database is then compared with the client's log (load_labelers.verify).
- redis-training: a training round with a worker running, on a fresh database and a tiny model.
  Redis is down when the round's training is requested (its message is never sent: the sweeper
  must re-send it), and restarted again while the worker trains the reward model. The round
  must finish with exactly one new policy version.
- kill: the next round is labeled and trained; its worker is killed with SIGKILL in the middle
  of PPO and a new one started. The step must be re-delivered, finish, and make exactly one
  new policy version.

The clients behave as a careful client should: after a 503 or a dropped connection they wait
RETRY_S and send the same request again (the submit is idempotent), so every ranking sent is
acknowledged in the end.

    .venv/bin/python bench/faults.py [--labelers 16] [--seconds 20] [--outage 3]
        [--phases postgres,redis-labeling,redis-training,kill]

THIS STOPS THE MACHINE'S REAL POSTGRESQL AND REDIS, for --outage seconds each time, and always
starts them again (in a finally block); everything else using them sees the outage too. The
database of --database-url is DROPPED and made anew. Exits 1 when a check fails.
"""

import argparse
import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import load_labelers  # first: it puts this checkout on sys.path
import psycopg
import redis
from load_labelers import K, Labeler, Loop, seed, verify

from bench.stack import Gunicorn, Worker, print_table, recreate_database
from bench.stack import site_env as stack_env

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("postgres", "redis-labeling", "redis-training", "kill")
RETRY_S = 0.25  # a client's pause after a 503 or a dropped connection before it tries again
ACK_GRACE_S = 30  # after a phase's time is up, an unacknowledged submit is retried this long
DATA = ROOT / "labelapp" / "data" / "self_instruct_seed_tasks.jsonl"
TRAIN_PROMPTS = 8
SAMPLING = {"max_new_tokens": 12, "seed": 1}
# Small enough for 2 busy cores; the reward model and PPO long enough to be hit while running.
QUICK_PPO = {"steps": 2, "batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1,
             "max_new_tokens": 12, "learning_rate": 1e-3}  # fmt: skip
SLOW_REWARD = {"epochs": 40, "batch_size": 1}
SLOW_PPO = {**QUICK_PPO, "steps": 16}
ROUND_TIMEOUT_S = 420


@dataclass(slots=True)
class Call:
    """One request as the client saw it."""

    name: str
    start: float
    end: float
    status: int | str  # the HTTP status, or the name of the transport error


# --- the services ------------------------------------------------------------------------------


class Services:
    """Stop and start the machine's PostgreSQL cluster and Redis server."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.cluster = args.pg_cluster.split("/")
        # The maintenance database: the benchmark's own may not exist yet.
        self.pg_url = psycopg.conninfo.make_conninfo(args.database_url, dbname="postgres")
        self.redis_start = shlex.split(args.redis_start)
        self.redis_url = args.redis_url

    def _pg(self, action: str, *extra: str) -> None:
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", *self.cluster, action, *extra]
        subprocess.run(command, check=True, capture_output=True, timeout=60)  # noqa: S603

    def pg_answers(self) -> bool:
        try:
            psycopg.connect(self.pg_url, connect_timeout=2).close()
            return True
        except psycopg.Error:
            return False

    def stop_postgres(self) -> None:
        self._pg("stop", "-m", "fast")  # ends the sessions at once, as a crash or restart would

    def start_postgres(self) -> None:
        if not self.pg_answers():
            self._pg("start")
        _wait(self.pg_answers, 60, "PostgreSQL to accept connections")

    def redis_answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.redis_url, socket_timeout=2).ping())
        except redis.RedisError:
            return False

    def stop_redis(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
        client.shutdown(nosave=True)  # redis-py expects the connection to close as it exits
        _wait(lambda: not self.redis_answers(), 10, "Redis to stop")

    def start_redis(self) -> None:
        if not self.redis_answers():
            subprocess.run(self.redis_start, check=True, timeout=30)  # noqa: S603
        _wait(self.redis_answers, 30, "Redis to answer")

    def ensure_running(self) -> None:
        """Start whatever is down: the last line of defence of every exit path."""
        for start in (self.start_postgres, self.start_redis):
            try:
                start()
            except Exception as exc:  # report it, and try the other one
                print(f"!! could not restart a service: {exc!r}", file=sys.stderr)


def outage(stop_service: Callable[[], None], start_service: Callable[[], None], seconds: float):
    """Stop a service, wait, start it again (always); the times of each event."""
    events = {"stop": time.perf_counter()}
    try:
        stop_service()
        events["stopped"] = time.perf_counter()
        time.sleep(seconds)
    finally:
        events["start"] = time.perf_counter()
        start_service()
        events["up"] = time.perf_counter()
    return events


def _wait(condition: Callable[[], object], seconds: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"gave up after {seconds:.0f} s waiting for {what}")


# --- the labelers ------------------------------------------------------------------------------


async def call(labeler: Labeler, calls: list[Call], name: str, method: str, url: str, body=None):
    """Send one request; its status (or transport error name) and JSON body."""
    start = time.perf_counter()
    try:
        status, content = await labeler.client.request(method, url, body)
        data = json.loads(content) if content else None
    except load_labelers.http1.HttpError as exc:  # the module Labeler's client comes from
        status, data = exc.kind, None
    except ValueError as exc:
        status, data = type(exc).__name__, None
    calls.append(Call(name, start, time.perf_counter(), status))
    return status, data


async def keep_labeling(labeler: Labeler, calls: list[Call], log: list[Loop], deadline: float):
    """Loop "next task -> submit" until the deadline or until there is no work; retry failures."""
    while time.perf_counter() < deadline:
        status, task = await call(labeler, calls, "next", "GET", "/api/v1/tasks/next")
        if status == 204:
            return
        if status != 200:
            await asyncio.sleep(RETRY_S)
            continue
        loop, url, body = labeler.start_loop(task, log)
        while time.perf_counter() < deadline + ACK_GRACE_S:
            status, answer = await call(labeler, calls, "ranking", "POST", url, body)
            if status in (200, 201):
                loop.submit_status, loop.ranking_id = status, answer["ranking_id"]
                break
            if isinstance(status, int) and status != 503:
                break  # refused: not retried, counted as an unexpected answer
            await asyncio.sleep(RETRY_S)


async def label_during(
    tokens, base_url: str, seconds: float, log: list[Loop], fault: Callable[[], dict] | None = None
):
    """Labelers work for `seconds`; `fault` runs (in a thread) a third of the way in."""
    labelers = [Labeler(uid, token, base_url, seed=i) for i, (uid, token) in enumerate(tokens)]
    calls: list[Call] = []
    deadline = time.perf_counter() + seconds

    async def inject():
        if fault is None:
            return {}
        await asyncio.sleep(seconds / 3)
        return await asyncio.to_thread(fault)

    try:
        work = (keep_labeling(labeler, calls, log, deadline) for labeler in labelers)
        events, *_ = await asyncio.gather(inject(), *work)
    finally:
        await asyncio.gather(*(labeler.client.aclose() for labeler in labelers))
    return calls, events


# --- checks ------------------------------------------------------------------------------------


def half_written(round_ids: list[int]) -> int:
    """Rankings without their C(K,2) comparisons (hidden repeats have none), and submitted
    assignments without a ranking."""
    from django.db.models import Count

    from labelapp.models import Assignment, Ranking

    rankings = Ranking.objects.filter(assignment__round_id__in=round_ids)
    pairs = K * (K - 1) // 2
    partial = (
        rankings.filter(assignment__repeat_of=None)
        .annotate(n=Count("comparisons"))
        .exclude(n=pairs)
        .count()
    )
    submitted = Assignment.objects.filter(round_id__in=round_ids, state=Assignment.State.SUBMITTED)
    unranked = submitted.filter(ranking__isnull=True).count()
    not_submitted = rankings.exclude(assignment__state=Assignment.State.SUBMITTED).count()
    return partial + unranked + not_submitted


def statuses_of(calls: list[Call], name: str) -> Counter:
    return Counter(c.status for c in calls if c.name == name)


def outage_report(name: str, calls: list[Call], events: dict, same_workers: bool, expect_503: bool):
    """One summary row of a labeling phase with an outage, and the checks it failed."""
    statuses = Counter(c.status for c in calls)
    ok = sum(n for s, n in statuses.items() if s in (200, 201, 204))
    unavailable = statuses[503]
    other_5xx = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500 and s != 503)
    dropped = sum(n for s, n in statuses.items() if isinstance(s, str))
    refused = sum(n for s, n in statuses.items() if isinstance(s, int) and 300 <= s < 500)
    up = events["up"]
    after = [c for c in calls if c.start >= up and c.status in (200, 201)]
    first_ok = min((c.end for c in after), default=float("nan")) - up
    last_503 = max((c.end for c in calls if c.status == 503), default=up) - up
    early_503 = sum(c.status == 503 and c.end < events["stop"] for c in calls)
    row = {
        "phase": name,
        "down (s)": f"{events['up'] - events['stop']:.1f}",
        "calls": len(calls),
        "2xx": ok,
        "503 (next + submit)": f"{unavailable} ({statuses_of(calls, 'next')[503]} + "
        f"{statuses_of(calls, 'ranking')[503]})",
        "other 5xx": other_5xx,
        "dropped": dropped,
        "4xx": refused,
        "first 2xx after up (s)": f"{first_ok:.2f}",
        "last 503 after up (s)": f"{max(last_503, 0):.2f}" if unavailable else "-",
        "gunicorn restarted": "no" if same_workers else "yes",
    }
    failures = [
        f"{name}: {what}"
        for what, bad in [
            ("a 5xx other than 503", other_5xx),
            ("a dropped connection", dropped),
            ("an unexpected 3xx/4xx", refused),
            ("a gunicorn worker was restarted", not same_workers),
            ("no 503 while the database was down", expect_503 and not unavailable),
            ("a 503 before the outage", early_503),
            ("a 503 though the database stayed up", not expect_503 and unavailable),
            ("not served again after the outage", not after),
        ]
        if bad
    ]
    return row, failures


# --- the stack ---------------------------------------------------------------------------------


def site_env(args: argparse.Namespace, broker: str, **extra: str) -> dict:
    """The environment of gunicorn and the workers (DEBUG off, as in production)."""
    return stack_env(args.database_url, REDIS_URL=broker, CELERY_BROKER_URL=broker, **extra)


def fresh_database(args: argparse.Namespace) -> None:
    """Drop and create the database, migrate it (the Django connection of this process too)."""
    from django.core.management import call_command
    from django.db import connection

    connection.close()
    recreate_database(args.database_url)
    call_command("migrate", verbosity=0)


# --- the phases --------------------------------------------------------------------------------


def labeling_phases(args, services: Services, phases: list[str], tmp: Path):
    """postgres and redis-labeling: an outage each during the labeling load; then verify."""
    from django.db import connection

    fresh_database(args)
    n_prompts = int(args.labelers + len(phases) * args.seconds * load_labelers.MAX_LOOPS_PER_S)
    round_, tokens = seed(n_prompts, args.labelers)
    connection.close()
    print(f"labeling: round of {n_prompts} prompts, {args.labelers} labelers")
    rows, failures, log = [], [], []
    site = Gunicorn(args, site_env(args, args.redis_url), tmp / "gunicorn-labeling.log")
    try:
        for name in phases:
            stop_service, start_service = {
                "postgres": (services.stop_postgres, services.start_postgres),
                "redis-labeling": (services.stop_redis, services.start_redis),
            }[name]
            workers = site.workers()
            calls, events = asyncio.run(
                label_during(
                    tokens, site.base_url, args.seconds, log,
                    lambda s=stop_service, t=start_service: outage(s, t, args.outage),
                )
            )  # fmt: skip
            row, bad = outage_report(
                name, calls, events, site.workers() == workers, expect_503=name == "postgres"
            )
            rows.append(row)
            failures += bad
            print(f"{name}: {json.dumps(row)}")
    finally:
        site.stop()
    lines, bad = verify(log, round_.pk)
    broken = half_written([round_.pk])
    lines.append(
        f"half-written rankings (comparisons missing, or ranking and state disagree) {broken}"
    )
    # A submit whose answer was lost (a 503 or a dropped connection after its COMMIT) and whose
    # retry found it stored: the retry answers 200 with the same ranking.
    replays = sum(loop.submit_status == 200 for loop in log)
    lines.append(
        f"submits stored before a failed answer, acknowledged by the retry (200) {replays}"
    )
    failures += [f"check failed: {name}" for name in bad]
    failures += ["half-written rankings"] * bool(broken)
    return rows, failures, lines


def tiny_model(directory: Path) -> Path:
    """A random 2-layer model and its tokenizer, as the tests build it (seconds on a CPU)."""
    from rlhf_worker.training.artifacts import save_model
    from rlhf_worker.training.bootstrap import TinyModelConfig, build_tiny_model
    from rlhf_worker.training.tokenizer import TokenizerConfig, train_tokenizer

    texts = []
    for line in DATA.read_text().splitlines():
        row = json.loads(line)
        texts += [row["prompt"], row["demonstration"]]
    tokenizer = train_tokenizer(texts[:400], TokenizerConfig(vocab_size=1024))
    config = TinyModelConfig(hidden_size=64, num_layers=2, intermediate_size=128)
    return save_model(build_tiny_model(tokenizer, config), tokenizer, directory)


def label_round(tokens, base_url: str) -> int:
    """Rank every task of the open round through the API; how many were ranked."""
    log: list[Loop] = []
    calls, _ = asyncio.run(label_during(tokens, base_url, 120, log))
    bad = [c for c in calls if c.status not in (200, 201, 204)]
    if bad:
        raise RuntimeError(f"labeling failed: {bad[:3]}")
    return sum(loop.ranking_id is not None for loop in log)


def train(base_url: str, admin_token: str, round_id: int, hyperparameters: dict) -> tuple:
    """POST /rounds/{id}/train as an admin: (status, body, seconds taken)."""
    started = time.perf_counter()
    response = httpx.post(
        f"{base_url}/api/v1/rounds/{round_id}/train",
        json={"method": "ppo", **hyperparameters},
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=60,
        trust_env=False,
    )
    return response.status_code, response.json(), time.perf_counter() - started


def wait_run(round_id: int, kind: str, low: float, high: float, what: str):
    """The round's `kind` step once it runs with low < progress < high."""
    from labelapp.models import TrainingRun

    def running():
        run = TrainingRun.objects.filter(round_id=round_id, kind=kind).first()
        if run and (run.status == "succeeded" or run.progress >= high):
            raise RuntimeError(f"the {kind} step went past {high:.0%} unseen: make it longer")
        return run if run and run.status == "running" and low < run.progress else None

    return _wait(running, ROUND_TIMEOUT_S, what, every=0.3)


def wait_next_round(round_id: int):
    """The round trained from `round_id`, once it is open for labeling (fails on a failure)."""
    from labelapp.models import LabelingRound

    def opened():
        failed = LabelingRound.objects.filter(state="failed").first()
        if failed:
            raise RuntimeError(f"round {failed.number} failed: {failed.error[-2000:]}")
        return LabelingRound.objects.filter(follows_round=round_id, state="labeling").first()

    return _wait(opened, ROUND_TIMEOUT_S, f"the round after round id {round_id}", every=0.5)


def round_outcome(round_id: int, versions_before: int) -> dict:
    """What a trained round left: versions made, its steps, the state of the round."""
    from labelapp.models import LabelingRound, PolicyVersion, TrainingRun

    runs = TrainingRun.objects.filter(round_id=round_id).exclude(
        kind="generate"
    )  # not a training step
    return {
        "new versions": PolicyVersion.objects.count() - versions_before,
        "steps": dict(Counter(runs.values_list("kind", flat=True))),
        "all succeeded": set(runs.values_list("status", flat=True)) == {"succeeded"},
        "round": LabelingRound.objects.get(pk=round_id).state,
    }


def resent_by_sweeper(log_path: Path, run_id: int, since: int = 0) -> int:
    """How many times the sweeper logged re-sending `run_id` (in the log after offset `since`)."""
    found = re.findall(r"re-sent training runs \[([\d, ]+)\]", log_path.read_text()[since:])
    return sum(str(run_id) in ids.split(", ") for ids in found)


@dataclass
class TrainingStack:
    """What the training phases share: the site, the worker, the logins, the services."""

    args: argparse.Namespace
    services: Services
    env: dict
    site: Gunicorn
    worker: Worker
    admin_token: str
    tokens: list
    worker_log: Path


def round_failures(name: str, outcome: dict) -> list[str]:
    """A trained round must leave one new version, one step of each kind, all succeeded."""
    return [
        f"{name}: {what}"
        for what, bad in [
            ("not exactly one new version", outcome["new versions"] != 1),
            ("a step ran twice", outcome["steps"] != {"reward": 1, "ppo": 1}),
            ("a step failed", not outcome["all succeeded"]),
            ("the round is not done", outcome["round"] != "done"),
        ]
        if bad
    ]


def redis_training_phase(stack: TrainingStack, round_) -> tuple[dict, list[str], object]:
    """Redis down while training is requested, then restarted while the reward model trains."""
    from labelapp.models import PolicyVersion, TrainingRun

    print(f"redis-training: labeled {label_round(stack.tokens, stack.site.base_url)} tasks")
    services = stack.services
    versions = PolicyVersion.objects.count()
    hyperparameters = {**QUICK_PPO, "reward": SLOW_REWARD}
    down = {"stop": time.perf_counter()}
    try:
        services.stop_redis()
        status, body, took = train(
            stack.site.base_url, stack.admin_token, round_.pk, hyperparameters
        )
    finally:
        down["start"] = time.perf_counter()
        services.start_redis()
        down["up"] = time.perf_counter()
    if status != 202:
        raise RuntimeError(f"train answered {status} while Redis was down: {body}")
    first = TrainingRun.objects.get(pk=body["training_run_id"])
    queued = first.status == "queued"
    reward = wait_run(round_.pk, "reward", 0.05, 0.6, "the reward model to train")
    picked_up = time.perf_counter() - down["up"]
    at = reward.progress
    restart = outage(services.stop_redis, services.start_redis, stack.args.outage)
    next_round = wait_next_round(round_.pk)
    finished = time.perf_counter() - restart["up"]
    outcome = round_outcome(round_.pk, versions)
    resent = resent_by_sweeper(stack.worker_log, first.pk)
    reward.refresh_from_db()
    row = {
        "phase": "redis-training",
        "fault": f"Redis down {down['start'] - down['stop']:.1f} s while training was requested;"
        f" restarted ({restart['start'] - restart['stop']:.1f} s down) with the reward model "
        f"{at:.0%} trained",
        "result": f"train answered {status} in {took:.1f} s, run {'queued' if queued else 'lost'}"
        f"; picked up {picked_up:.0f} s after Redis was back (re-sent by the sweeper {resent}x);"
        f" reward step attempts {reward.attempts}; round finished {finished:.0f} s after the "
        f"restart; {json.dumps(outcome)}",
    }
    failures = round_failures("redis-training", outcome)
    failures += ["redis-training: the run was not queued"] * (not queued)
    return row, failures, next_round


def kill_phase(stack: TrainingStack, round_) -> tuple[dict, list[str], object]:
    """The worker killed with SIGKILL in the middle of PPO; a new one started."""
    from labelapp.models import PolicyVersion, TrainingRun

    print(f"kill: labeled {label_round(stack.tokens, stack.site.base_url)} tasks")
    versions = PolicyVersion.objects.count()
    hyperparameters = {**SLOW_PPO, "reward": {"epochs": 1, "batch_size": 4}}
    status, body, _ = train(stack.site.base_url, stack.admin_token, round_.pk, hyperparameters)
    if status != 202:
        raise RuntimeError(f"train answered {status}: {body}")
    ppo = wait_run(round_.pk, "ppo", 0.1, 0.6, "PPO to be under way")
    at = ppo.progress
    log_offset = len(stack.worker_log.read_text())
    stack.worker.kill()
    killed = time.perf_counter()
    stack.worker = Worker(stack.env, stack.worker_log)

    def taken_over():
        run = TrainingRun.objects.get(pk=ppo.pk)
        return run.attempts >= 2 or run.status != "running"

    _wait(taken_over, ROUND_TIMEOUT_S, "the PPO step to be re-delivered", every=0.3)
    claimed = time.perf_counter() - killed
    next_round = wait_next_round(round_.pk)
    finished = time.perf_counter() - killed
    ppo.refresh_from_db()
    outcome = round_outcome(round_.pk, versions)
    resent = resent_by_sweeper(stack.worker_log, ppo.pk, log_offset)
    row = {
        "phase": "kill",
        "fault": f"worker (and its beat) SIGKILLed with PPO at {at:.0%}; a new one started",
        "result": f"PPO claimed again after {claimed:.0f} s (re-sent by the sweeper {resent}x, "
        f"else re-delivered by Redis), attempts {ppo.attempts}, {ppo.status}; round finished "
        f"{finished:.0f} s after the kill; {json.dumps(outcome)}",
    }
    failures = round_failures("kill", outcome)
    failures += ["kill: PPO was not run a second time"] * (ppo.attempts != 2)
    return row, failures, next_round


def seed_training(args, tmp: Path):
    """A fresh database with v1 (a tiny model), round 1 of TRAIN_PROMPTS, labelers, an admin."""
    from django.contrib.auth.models import Group, User
    from django.db import connection

    from labelapp.access import ADMINS
    from labelapp.models import Completion, LabelingRound
    from labelapp.services.tokens import issue_token
    from labelapp.services.training import register_base_policy

    model_dir = tiny_model(tmp / "base-model")
    fresh_database(args)
    round_, tokens = seed(TRAIN_PROMPTS, 2)
    for completion in Completion.objects.filter(round=round_):  # short answers: quick training
        completion.text = f"Answer {completion.pk % 7}: " + " ".join(["word"] * (completion.pk % 9))
        completion.save(update_fields=["text"])
    LabelingRound.objects.filter(pk=round_.pk).update(config={"sampling": SAMPLING})
    register_base_policy(str(model_dir))
    admin = User.objects.create_user("faults-admin")
    admin.groups.add(Group.objects.get_or_create(name=ADMINS)[0])
    admin_token = issue_token(admin, "faults")
    connection.close()
    return model_dir, round_, tokens, admin_token


def training_phases(args, services: Services, phases: list[str], tmp: Path):
    """redis-training and kill: rounds trained by a real worker, one fault each."""
    from django.db import connection

    model_dir, round_, tokens, admin_token = seed_training(args, tmp)
    broker = args.training_broker_url
    redis.Redis.from_url(broker).flushdb()
    env = site_env(
        args, broker,
        ARTIFACTS_DIR=str(tmp / "artifacts"), BASE_MODEL=str(model_dir), LOG_LEVEL="INFO",
        # A killed worker's message comes back after 10 s and its run is taken over after 5 s
        # of silence; the sweeper runs every 3 s and re-sends what waited 8 s (production:
        # hours, 5 min, 60 s, 10 min).
        CELERY_VISIBILITY_TIMEOUT="10", TRAINING_STALE_SECONDS="5",
        SWEEP_INTERVAL_SECONDS="3", TRAINING_RESEND_SECONDS="8", OMP_NUM_THREADS="2",
    )  # fmt: skip
    site = Gunicorn(args, env, tmp / "gunicorn-training.log")
    worker_log = tmp / "worker.log"
    stack = TrainingStack(
        args, services, env, site, Worker(env, worker_log), admin_token, tokens, worker_log
    )
    rows, failures = [], []
    run_phase = {"redis-training": redis_training_phase, "kill": kill_phase}
    try:
        for name in phases:
            row, bad, round_ = run_phase[name](stack, round_)
            rows.append(row)
            failures += bad
            print(f"{name}: {json.dumps(row)}")
    except Exception:
        print("worker's log (tail):\n" + worker_log.read_text()[-4000:])
        raise
    finally:
        stack.worker.stop()
        site.stop()
        connection.close()
    return rows, failures


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated, in order")
    parser.add_argument("--labelers", type=int, default=16, help="simulated labelers")
    parser.add_argument("--seconds", type=float, default=20, help="length of a labeling phase")
    parser.add_argument("--outage", type=float, default=3, help="seconds a service stays down")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (gthread)")
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/faults",
        help="a PostgreSQL database that is DROPPED and created anew",
    )  # fmt: skip
    clusters = sorted(Path("/etc/postgresql").glob("*/main"))
    parser.add_argument(
        "--pg-cluster", default=f"{clusters[-1].parent.name}/main" if clusters else "15/main",
        help="VERSION/NAME of the cluster behind --database-url (pg_ctlcluster)",
    )  # fmt: skip
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--training-broker-url", default="redis://127.0.0.1:6379/13",
        help="the Redis database the training phases' worker uses (flushed)",
    )  # fmt: skip
    parser.add_argument(
        "--redis-start",
        default="redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' "
        "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log",
        help="the command that starts Redis again, as this machine runs it",
    )
    args = parser.parse_args()
    args.phases = [p for p in args.phases.split(",") if p]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {', '.join(sorted(unknown))}; known: {', '.join(PHASES)}")
    return args


def main() -> int:
    args = parse_args()
    os.environ.update(site_env(args, args.redis_url))
    import django

    django.setup()
    services = Services(args)
    if not (services.pg_answers() and services.redis_answers()):
        raise SystemExit("PostgreSQL and Redis must be running")
    print(
        f"python {sys.version.split()[0]}, django {django.get_version()}, {os.cpu_count()} cores,"
        f" load average {os.getloadavg()[0]:.2f}; PostgreSQL cluster {args.pg_cluster}, "
        f"outages of {args.outage:g} s; phases {', '.join(args.phases)}"
    )
    labeling = [p for p in args.phases if p in ("postgres", "redis-labeling")]
    training = [p for p in args.phases if p in ("redis-training", "kill")]
    outage_rows, training_rows, failures, checks = [], [], [], []
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
            if labeling:
                outage_rows, bad, checks = labeling_phases(args, services, labeling, Path(tmp))
                failures += bad
            if training:
                training_rows, bad = training_phases(args, services, training, Path(tmp))
                failures += bad
    finally:
        services.ensure_running()
    print(f"\nall phases in {time.perf_counter() - started:.0f} s")
    print_table(outage_rows)
    if checks:
        print("database vs client log, both labeling phases:\n  " + "\n  ".join(checks) + "\n")
    print_table(training_rows)
    print("RESULT: " + ("OK" if not failures else "FAILED: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
