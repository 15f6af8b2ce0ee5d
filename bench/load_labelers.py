"""Load benchmark of the labeling API (issue 7): simulated labelers against the real stack.

Each simulated labeler loops "GET /api/v1/tasks/next -> POST /api/v1/assignments/{id}/ranking"
with its own Bearer token and its own keep-alive connection (one httpx client each), against
gunicorn + PostgreSQL on loopback. Two measurements:

- capacity: --labelers labelers with no think time for --seconds: loops/s at saturation.
- latency: open-loop Poisson arrivals of --rate loops/s for --latency-seconds, each loop run by
  an idle labeler: p50/p95/p99/max of each call, from sending the request to its answer.

Then the database is compared with the client's log: every ranking the client saw acknowledged
(201/200) is stored with the order it sent and its C(K,2) comparisons, no assignment went to two
labelers, no labeler got the same prompt twice. Exits 1 when a check fails or any call erred;
the goals (capacity >= 200 loops/s, p99 < 50 ms) are printed as met or missed, not enforced:
on a shared 2-core machine they measure the machine as much as the code.

    .venv/bin/python bench/load_labelers.py [--labelers 64] [--seconds 30] [--rate 100]
        [--latency-seconds 60] [--mode capacity|latency|both] [--workers 3] [--threads 4]

The database of --database-url (default postgres://postgres@127.0.0.1:5432/loadtest) is DROPPED
and made anew on every run. Redis is part of the stack but not of these two calls (labeling
enqueues nothing). The client shares the two cores with gunicorn and PostgreSQL, so the CPU
time of each is printed. It is kept lean (no think-time timers, no per-call logging), but httpx
itself costs about 1.7 ms of CPU per call on this machine, some 15 times what a bare asyncio
socket client does: at 200 loops/s that would be most of a core.
"""

import argparse
import asyncio
import math
import os
import platform
import random
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import httpx
import psutil
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's labelapp, even where another one is installed

GOAL_LOOPS_PER_S = 200
GOAL_P99_MS = 50
K, OVERLAP = 4, 1
CALLS = ("next", "ranking")
CALL_TIMEOUT_S = 10
MAX_ERRORS = 200  # a phase stops early past this many errors: a broken server is not measured
FILLER = " ".join(["The answer explains the idea in plain words, step by step."] * 5)


@dataclass(slots=True)
class Loop:
    """One "next task -> ranking" as the client saw it; the database is checked against these."""

    labeler: int  # user id
    assignment_id: int
    prompt_id: int
    ids_by_label: dict[str, int]
    sent: list[str]
    submit_status: int | None = None
    ranking_id: int | None = None


@dataclass
class Phase:
    """What one measurement saw: call latencies (ms) and statuses, errors, CPU use."""

    name: str
    ms: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in CALLS})
    status: dict[str, Counter] = field(default_factory=lambda: {n: Counter() for n in CALLS})
    errors: list[str] = field(default_factory=list)
    loops: int = 0
    elapsed: float = 0.0
    no_work: int = 0
    waited_for_labeler: int = 0  # open loop: arrivals that found every labeler busy
    start_lag_ms: list[float] = field(default_factory=list)  # open loop: start - scheduled time
    fell_behind: bool = False  # open loop: arrivals were still queued when the time was up
    connections: tuple[int, int] = (0, 0)  # PostgreSQL: open at the end, opened meanwhile
    cpu: dict[str, float] = field(default_factory=dict)


class Labeler:
    """A simulated labeler: a token, one keep-alive connection, a random but valid ranking."""

    def __init__(self, user_id: int, token: str, base_url: str, seed: int):
        self.user_id = user_id
        self.rng = random.Random(seed)
        self.client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            limits=httpx.Limits(max_connections=1, keepalive_expiry=120),
            timeout=CALL_TIMEOUT_S,
            trust_env=False,  # loopback only: never a proxy from the environment
        )

    async def _call(self, phase: Phase, name: str, expected, method: str, url: str, body=None):
        """The answer's status and JSON body; (None, None) on a transport error or bad body."""
        start = time.perf_counter()
        try:
            response = await self.client.request(method, url, json=body)
            data = response.json() if response.content else None
        except (httpx.HTTPError, ValueError) as exc:
            phase.status[name][type(exc).__name__] += 1
            phase.errors.append(f"{name}: {exc!r}")
            return None, None
        phase.ms[name].append((time.perf_counter() - start) * 1000)
        phase.status[name][response.status_code] += 1
        if response.status_code not in expected:
            phase.errors.append(f"{name}: {response.status_code} {response.text[:200]}")
        return response.status_code, data

    async def loop_once(self, phase: Phase, log: list[Loop]) -> bool:
        """Ask for a task and rank it; False when there was no work or a call failed."""
        status, task = await self._call(phase, "next", (200, 204), "GET", "/api/v1/tasks/next")
        if status != 200:
            phase.no_work += status == 204
            return False
        ids = {c["label"]: c["id"] for c in task["completions"]}
        sent = self.rng.sample(list(ids), len(ids))
        loop = Loop(self.user_id, task["assignment_id"], task["prompt"]["id"], ids, sent)
        log.append(loop)
        url = f"/api/v1/assignments/{loop.assignment_id}/ranking"
        body = {"ranking": sent, "time_spent_ms": 1000}
        loop.submit_status, answer = await self._call(phase, "ranking", (201,), "POST", url, body)
        if loop.submit_status in (200, 201):  # 200 is a replay: unexpected here, but acknowledged
            loop.ranking_id = answer["ranking_id"]
            phase.loops += 1
            return True
        return False


async def closed_loop(labelers: list[Labeler], phase: Phase, log, seconds: float, budget: int):
    """Every labeler loops with no think time until the deadline or the loop budget."""
    left = [budget]
    start = time.perf_counter()
    deadline = start + seconds

    async def work(labeler: Labeler):
        while time.perf_counter() < deadline and left[0] > 0 and len(phase.errors) < MAX_ERRORS:
            left[0] -= 1
            if not await labeler.loop_once(phase, log):
                if phase.no_work:
                    return
                await asyncio.sleep(0.05)  # after an error: do not spin on a failing server

    await asyncio.gather(*(work(labeler) for labeler in labelers))
    phase.elapsed = time.perf_counter() - start


async def open_loop(labelers, phase: Phase, log, rate: float, seconds: float, budget: int):
    """Poisson arrivals of `rate` loops/s; each is run by an idle labeler (the first free one)."""
    rng = random.Random(7)
    idle: asyncio.Queue[Labeler] = asyncio.Queue()
    for labeler in labelers:
        idle.put_nowait(labeler)
    running: set[asyncio.Task] = set()

    async def one(labeler: Labeler):
        try:
            await labeler.loop_once(phase, log)
        finally:
            idle.put_nowait(labeler)

    start = time.perf_counter()
    due, arrivals = 0.0, 0
    while arrivals < budget and len(phase.errors) < MAX_ERRORS:
        due += rng.expovariate(rate)
        if due >= seconds:
            break
        delay = start + due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if idle.empty():
            phase.waited_for_labeler += 1
        labeler = await idle.get()
        if time.perf_counter() - start > seconds:
            idle.put_nowait(labeler)
            phase.fell_behind = True  # the server (or the client) could not keep up: stop on time
            break
        phase.start_lag_ms.append((time.perf_counter() - start - due) * 1000)
        task = asyncio.create_task(one(labeler))
        running.add(task)
        task.add_done_callback(running.discard)
        arrivals += 1
    await asyncio.gather(*running)
    phase.elapsed = max(time.perf_counter() - start, seconds)  # the rate over the offered window


class CpuMeter:
    """CPU seconds of the client, gunicorn (master + workers) and the run's PostgreSQL backends."""

    def __init__(self, gunicorn_pid: int, database_url: str):
        self.gunicorn = psutil.Process(gunicorn_pid)
        self.database_url = database_url

    def _backends(self) -> tuple[list[int], int]:
        """The database's backends now, and how many sessions it has had (connections opened)."""
        with psycopg.connect(self.database_url) as conn:
            pids = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            ).fetchall()
            # pg_stat_database is flushed by each backend with a delay: count what it says now.
            (sessions,) = conn.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        return [pid for (pid,) in pids], sessions

    @staticmethod
    def _cpu(pids) -> dict[int, float]:
        out = {}
        for pid in pids:
            try:
                times = psutil.Process(pid).cpu_times()
                out[pid] = times.user + times.system
            except psutil.Error:
                pass
        return out

    def snapshot(self) -> dict:
        own = resource.getrusage(resource.RUSAGE_SELF)
        machine = psutil.cpu_times()
        server = [self.gunicorn.pid] + [c.pid for c in self.gunicorn.children(recursive=True)]
        backends, sessions = self._backends()
        return {
            "sessions": sessions,
            "t": time.perf_counter(),
            "client": own.ru_utime + own.ru_stime,
            "gunicorn": self._cpu(server),
            "postgres": self._cpu(backends),
            "machine": sum(machine) - machine.idle - machine.iowait,
        }

    @staticmethod
    def cores(before: dict, after: dict) -> dict[str, float]:
        """Average cores busy between two snapshots (processes gone meanwhile are not counted)."""
        wall = after["t"] - before["t"]

        def used(key):
            return sum(t - before[key].get(pid, 0.0) for pid, t in after[key].items())

        return {
            "client": (after["client"] - before["client"]) / wall,
            "gunicorn": used("gunicorn") / wall,
            "postgres": used("postgres") / wall,
            "machine": (after["machine"] - before["machine"]) / wall,
        }


async def run_load(args, tokens: list[tuple[int, str]], base_url: str, meter: CpuMeter, budgets):
    """Warm up (one loop per labeler), then the measurements asked for; returns phases and log."""
    labelers = [Labeler(uid, token, base_url, seed=i) for i, (uid, token) in enumerate(tokens)]
    log: list[Loop] = []
    phases = []
    try:
        warmup = Phase("warm-up")
        await asyncio.wait_for(closed_loop(labelers, warmup, log, 60, len(labelers)), 90)
        phases.append(warmup)
        for name in [m for m in ("capacity", "latency") if args.mode in (m, "both")]:
            phase = Phase(name)
            if name == "capacity":
                seconds = args.seconds
                run = closed_loop(labelers, phase, log, seconds, budgets[name])
            else:
                seconds = args.latency_seconds
                run = open_loop(labelers, phase, log, args.rate, seconds, budgets[name])
            before = meter.snapshot()
            # In-flight calls end within CALL_TIMEOUT_S; the margin only guards against a hang.
            await asyncio.wait_for(run, seconds + 60)
            after = meter.snapshot()
            phase.cpu = meter.cores(before, after)
            phase.connections = (len(after["postgres"]), after["sessions"] - before["sessions"])
            phases.append(phase)
    finally:
        await asyncio.gather(*(labeler.client.aclose() for labeler in labelers))
    return phases, log


def recreate_database(url: str) -> None:
    """Drop and create the benchmark's database, so every run starts from the same state."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    name = params.pop("dbname")
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        database = sql.Identifier(name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(database))


def seed(n_prompts: int, n_labelers: int):
    """A round in labeling with n_prompts prompts x K completions; labelers with API tokens."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from django.db import connection

    from labelapp.access import LABELERS
    from labelapp.models import Completion, Prompt, text_hash
    from labelapp.services.rounds import create_round, start_labeling
    from labelapp.services.tokens import issue_token

    texts = [f"Prompt {i}: explain idea number {i} to a newcomer." for i in range(n_prompts)]
    prompts = Prompt.objects.bulk_create(
        (Prompt(text=t, text_hash=text_hash(t), source="load") for t in texts), batch_size=5000
    )
    round_ = create_round(prompts, k=K, overlap=OVERLAP)
    Completion.objects.bulk_create(
        (
            Completion(prompt=p, round=round_, text=f"Answer {j}. {FILLER}", source="load")
            for p in prompts
            for j in range(K)
        ),
        batch_size=5000,
    )
    start_labeling(round_)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # the statistics autovacuum would have a minute after the load
    users = User.objects.bulk_create(
        User(username=f"load{i:03d}", password=make_password(None)) for i in range(n_labelers)
    )
    group = Group.objects.get(name=LABELERS)
    User.groups.through.objects.bulk_create(
        User.groups.through(user_id=u.pk, group_id=group.pk) for u in users
    )
    return round_, [(u.pk, issue_token(u, "load test")) for u in users]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(args, port: int, env: dict, logfile) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "gunicorn", "labelapp.wsgi",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(args.workers),
        "--worker-class", "gthread" if args.threads > 1 else "sync",
        "--threads", str(args.threads),
        "--keep-alive", "120",  # open-loop gaps between one labeler's loops can last seconds
        "--timeout", "30",
        "--log-level", "warning",
        "--no-control-socket",  # gunicorn 27's default socket path is shared by every instance
    ]  # fmt: skip
    # Our own interpreter and arguments, no shell.
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT)  # noqa: S603


def wait_ready(server: subprocess.Popen, base_url: str, seconds: float = 60) -> None:
    """Until the app answers (an anonymous next-task call is a 401 from Django itself)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            response = httpx.get(f"{base_url}/api/v1/tasks/next", timeout=2, trust_env=False)
            if response.status_code == 401:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within {seconds:.0f} s")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)


def verify(log: list[Loop], round_id: int) -> tuple[list[str], list[str]]:
    """Compare the database with the client log; returns (report lines, failures)."""
    from django.db.models import Count

    from labelapp.models import Assignment, Comparison, Ranking

    stored = {
        pk: rest
        for pk, *rest in Ranking.objects.filter(assignment__round_id=round_id).values_list(
            "pk", "assignment_id", "labeler_id", "order", "labels"
        )
    }
    pairs = defaultdict(set)
    for ranking_id, chosen, rejected in Comparison.objects.filter(
        ranking__assignment__round_id=round_id
    ).values_list("ranking_id", "chosen_id", "rejected_id"):
        pairs[ranking_id].add((chosen, rejected))

    acked = [loop for loop in log if loop.ranking_id is not None]
    lost = [loop for loop in acked if loop.ranking_id not in stored]
    wrong = []
    for loop in acked:
        if loop.ranking_id not in stored:
            continue
        order = [loop.ids_by_label[label] for label in loop.sent]
        expected = [loop.assignment_id, loop.labeler, order, loop.sent]
        same_pairs = pairs[loop.ranking_id] == set(combinations(order, 2))
        if stored[loop.ranking_id] != expected or not same_pairs:
            wrong.append(loop)
    unacked = set(stored) - {loop.ranking_id for loop in acked}

    holders = defaultdict(set)  # assignment -> labelers it was handed to
    prompts_of = defaultdict(set)  # labeler -> (prompt, assignment) pairs handed to them
    for loop in log:
        holders[loop.assignment_id].add(loop.labeler)
        prompts_of[loop.labeler].add((loop.prompt_id, loop.assignment_id))
    owner = dict(Assignment.objects.filter(pk__in=list(holders)).values_list("pk", "labeler_id"))
    shared = [a for a, who in holders.items() if len(who) > 1 or owner.get(a) not in who]
    twice = sum(len(got) - len({p for p, _ in got}) for got in prompts_of.values())
    live = [Assignment.State.RESERVED, Assignment.State.SUBMITTED]
    over_overlap = (
        Assignment.objects.filter(round_id=round_id, state__in=live)
        .values("prompt_id")
        .annotate(n=Count("labeler", distinct=True))
        .filter(n__gt=OVERLAP)
        .count()
    )
    twice_db = (
        Assignment.objects.filter(round_id=round_id, labeler__isnull=False)
        .values("prompt_id", "labeler_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    lines = [
        f"acknowledged rankings {len(acked)}: in the database with the order sent "
        f"{len(acked) - len(lost) - len(wrong)}, lost {len(lost)}, wrong {len(wrong)}; "
        f"stored but never acknowledged {len(unacked)}",
        f"assignments handed out {len(holders)}: to two labelers (or not the owner) {len(shared)}; "
        f"prompts held by more than {OVERLAP} labeler(s) {over_overlap}",
        f"labelers given the same prompt twice: client log {twice}, database {twice_db}",
    ]
    failures = [
        name
        for name, bad in [
            ("lost", lost), ("wrong", wrong), ("shared", shared), ("over_overlap", over_overlap),
            ("twice", twice), ("twice_db", twice_db), ("unacked", unacked),
        ]
        if bad
    ]  # fmt: skip
    return lines, failures


def percentile(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    return sorted_ms[max(0, math.ceil(p / 100 * len(sorted_ms)) - 1)] if sorted_ms else float("nan")


def describe(phase: Phase, args) -> tuple[list[str], list[str]]:
    """Summary lines of one phase, and the goals it missed."""
    rate = phase.loops / phase.elapsed if phase.elapsed else 0.0
    head = {
        "warm-up": f"warm-up: one loop per labeler, {phase.loops} loops",
        "capacity": f"capacity: {args.labelers} labelers, no think time, {phase.elapsed:.1f} s: "
        f"{phase.loops} loops, {rate:.1f} loops/s",
        "latency": f"latency: Poisson {args.rate:g} loops/s offered for "
        f"{args.latency_seconds:g} s: {phase.loops} loops, {rate:.1f} loops/s done",
    }[phase.name]
    lines, missed = [head], []
    for name, label in (("next", "GET  tasks/next  "), ("ranking", "POST .../ranking ")):
        ms = sorted(phase.ms[name])
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(phase.status[name].items(), key=str))
        p50, p95, p99 = (percentile(ms, p) for p in (50, 95, 99))
        worst = ms[-1] if ms else math.nan
        lines.append(
            f"  {label} n={len(ms):6d}  p50 {p50:6.1f}  p95 {p95:6.1f}  p99 {p99:6.1f}"
            f"  max {worst:6.1f} ms  [{statuses}]"
        )
        if phase.name == "latency" and not percentile(ms, 99) < GOAL_P99_MS:
            missed.append(f"p99 of {name} < {GOAL_P99_MS} ms")
    if phase.name == "capacity" and rate < GOAL_LOOPS_PER_S:
        missed.append(f"capacity >= {GOAL_LOOPS_PER_S} loops/s")
    if phase.name == "latency":
        lag = sorted(phase.start_lag_ms)
        lines.append(
            f"  arrivals that waited for an idle labeler {phase.waited_for_labeler}; client start "
            f"lag p99 {percentile(lag, 99):.1f} ms, max {(lag[-1] if lag else 0):.1f} ms"
        )
    if phase.cpu:
        c = phase.cpu
        lines.append(
            f"  cores busy: client {c['client']:.2f}, gunicorn {c['gunicorn']:.2f}, postgres "
            f"{c['postgres']:.2f}; whole machine {c['machine']:.2f} of {os.cpu_count()} "
            "(other work included)"
        )
        if phase.loops:
            per_loop = {k: c[k] / rate * 1000 for k in ("client", "gunicorn", "postgres")}
            lines.append(
                f"  CPU per loop: client {per_loop['client']:.1f} ms, gunicorn "
                f"{per_loop['gunicorn']:.1f} ms, postgres {per_loop['postgres']:.1f} ms; with the "
                f"{os.cpu_count()} cores to itself this stack would top out near "
                f"{os.cpu_count() * 1000 / sum(per_loop.values()):.0f} loops/s"
            )
    if phase.cpu:
        open_now, opened = phase.connections
        lines.append(
            f"  PostgreSQL connections: {open_now} open at the end, {opened} opened during the run "
            f"for {sum(len(ms) for ms in phase.ms.values())} calls (CONN_MAX_AGE reuse)"
            + ("; the CPU of closed ones is not counted above" if opened > open_now else "")
        )
    if phase.fell_behind:
        lines.append("  the offered rate was not kept up: arrivals were still waiting at the end")
    lines.append(f"  errors {len(phase.errors)}, no work (204) {phase.no_work}")
    lines += [f"    {e}" for e in phase.errors[:5]]
    return lines, missed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labelers", type=int, default=64, help="simulated labelers")
    parser.add_argument("--seconds", type=float, default=30, help="length of the capacity run")
    parser.add_argument("--rate", type=float, default=100, help="loops/s offered (latency)")
    parser.add_argument("--latency-seconds", type=float, default=60, help="length of latency run")
    parser.add_argument("--mode", choices=["capacity", "latency", "both"], default="both")
    # 2 cores: 3 processes (cores + 1, so one waiting on PostgreSQL leaves both cores busy),
    # 4 threads each to overlap database round trips; threads also keep connections alive,
    # which gunicorn's sync workers refuse. --threads 1 gives sync workers.
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (gthread)")
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/loadtest",
        help="a PostgreSQL database that is DROPPED and created anew",
    )  # fmt: skip
    parser.add_argument(
        "--max-loops-per-s", type=float, default=600,
        help="capacity's loop budget per second, which sizes the round (above the ~490 req/s of "
        "a bare Django view on this machine)",
    )  # fmt: skip
    parser.add_argument(
        "--min-prompts", type=int, default=25_000,
        help="the round has at least this many prompts: a query that reads the whole round "
        "must show its cost even in a short run",
    )  # fmt: skip
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "DJANGO_SETTINGS_MODULE": "labelapp.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(env)
    # Loops each phase may run at most, which sizes the round (Poisson counts stay well under
    # 1.2 x the mean over a minute).
    budgets = {
        "capacity": math.ceil(args.seconds * args.max_loops_per_s),
        "latency": math.ceil(args.rate * args.latency_seconds * 1.2),
    }
    if args.mode != "both":
        budgets["latency" if args.mode == "capacity" else "capacity"] = 0
    n_prompts = max(args.labelers + budgets["capacity"] + budgets["latency"], args.min_prompts)

    import django
    from django.core.management import call_command
    from django.db import connection

    started = time.perf_counter()
    recreate_database(args.database_url)
    django.setup()
    call_command("migrate", verbosity=0)
    round_, tokens = seed(n_prompts, args.labelers)
    connection.close()
    print(
        f"database {args.database_url}: migrated and seeded in "
        f"{time.perf_counter() - started:.1f} s (round {round_.number}: {n_prompts} prompts x "
        f"{K} completions, overlap {OVERLAP}; {args.labelers} labelers)"
    )
    print(
        f"python {platform.python_version()}, django {django.get_version()}, gunicorn "
        f"{_version('gunicorn')} ({args.workers} x {'gthread' if args.threads > 1 else 'sync'}"
        f"{f', {args.threads} threads' if args.threads > 1 else ''}), httpx {httpx.__version__}, "
        f"psycopg {psycopg.__version__}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f} before the run"
    )

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as server_log:
        server = start_gunicorn(args, port, env, server_log)
        try:
            wait_ready(server, base_url)
            meter = CpuMeter(server.pid, args.database_url)
            phases, log = asyncio.run(run_load(args, tokens, base_url, meter, budgets))
        finally:
            stop(server)
            server_log.seek(0)
            tail = server_log.read()[-3000:]
    noise = ("No directory at", "mw_instance = middleware", "Unauthorized: /api/v1/tasks/next")
    tail = "\n".join(
        line for line in tail.splitlines() if line.strip() and not any(n in line for n in noise)
    )
    if tail:
        print("gunicorn's log (tail):\n" + tail)

    failures, missed = [], []
    for phase in phases:
        lines, phase_missed = describe(phase, args)
        print("\n".join(lines))
        missed += phase_missed
        if phase.errors:
            failures.append(f"{phase.name}: {len(phase.errors)} errors")
        if phase.no_work:
            failures.append(f"{phase.name}: the round ran out of work; raise --max-loops-per-s")
    lines, bad = verify(log, round_.pk)
    print("database vs client log:\n  " + "\n  ".join(lines))
    failures += [f"check failed: {name}" for name in bad]
    print("goals: " + ("all met" if not missed else "missed " + "; ".join(missed)))
    print("RESULT: " + ("OK" if not failures else "FAILED: " + "; ".join(failures)))
    return 1 if failures else 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    sys.exit(main())
