"""Load benchmark of the labeling API (issue 7): simulated labelers against the real stack,
and the same load against Label Studio, side by side.

Each simulated labeler loops "GET /api/v1/tasks/next -> POST /api/v1/assignments/{id}/ranking"
with its own Bearer token and its own keep-alive connection (bench/http1.py), against
gunicorn + PostgreSQL on loopback. Two measurements:

- capacity: --labelers labelers with no think time for --seconds: loops/s at saturation.
- latency: open-loop Poisson arrivals of --rate loops/s for --latency-seconds, each loop run by
  an idle labeler: p50/p95/p99/max of each call, from sending the request to its answer.

Then the database is compared with the client's log: every ranking the client saw acknowledged
(201/200) is stored with the order it sent and its C(K,2) comparisons, no assignment went to two
labelers, no labeler got the same prompt twice. Exits 1 when a check fails or any call erred;
the goals (capacity >= 200 loops/s, p99 < 50 ms) are printed as met or missed, not enforced:
on a shared 2-core machine they measure the machine as much as the code.

--target labelstudio runs the same two measurements, with the same code, against Label Studio
1.23.2 (bench/labelstudio.py: its own venv and PostgreSQL database, its WSGI app under the same
gunicorn settings): each labeler loops over its labeling stream, "GET /api/projects/{id}/next/ ->
POST /api/tasks/{id}/annotations/", on the same prompts and answers, ranked with its Ranker tag,
and its database is checked against the client log. Its latency run offers --ls-rate loops/s, a
load it can take (it saturates far below --rate). --target both (the default) measures ours, then
Label Studio, with the same labelers and durations, and prints them side by side with the ratios
(goals: >= 20x its loops/s; our p99 below its p50 for each call).

    .venv/bin/python bench/load_labelers.py [--target ours|labelstudio|both] [--labelers 64]
        [--seconds 30] [--rate 100] [--ls-rate 3] [--latency-seconds 60]
        [--mode capacity|latency|both] [--workers 3] [--threads 4] [--analyze-every 10]

Our gunicorn runs from the project's root, so it reads gunicorn.conf.py (the app preloaded and
frozen out of the garbage collector, as in production); the flags here override its workers and
threads. Where the server has autovacuum off, the bench runs ANALYZE every --analyze-every
seconds in its stead, for both stacks (Analyzer).

The databases of --database-url (default postgres://postgres@127.0.0.1:5432/loadtest) and
--ls-database-url (.../labelstudio) are DROPPED and made anew on every run. Redis is part of our
stack but not of these two calls (labeling enqueues nothing). The client shares the two cores
with gunicorn and PostgreSQL, so the CPU time of each is printed. It is kept lean: no think-time
timers, no per-call logging, and a bare asyncio HTTP/1.1 client (bench/http1.py) instead of
httpx, which took 5 times its CPU per loop (docs/benchmarks.md).
"""

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import resource
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's labelapp, even where another one is installed

from bench import http1, labelstudio  # noqa: E402 (needs ROOT on sys.path)
from bench.stack import (  # noqa: E402
    free_port,
    percentile,
    recreate_database,
    site_env,
    start_gunicorn,
    stop,
    wait_ready,
)

GOAL_LOOPS_PER_S = 200
GOAL_P99_MS = 50
GOAL_RATIO = 20  # side by side: at least 20x Label Studio's loops/s, our p99 below its p50
K, OVERLAP = 4, 1
CALLS = ("next", "ranking")
CALL_TIMEOUT_S = 10
# Label Studio's calls queue for seconds under load: measured, not cut off.
LS_CALL_TIMEOUT_S = 60
# More than either stack serves on this machine (a bare Django view does about 490 requests/s):
# rounds are sized with it so that no run runs out of work.
MAX_LOOPS_PER_S = 600
MAX_ERRORS = 200  # a phase stops early past this many errors: a broken server is not measured
FILLER = " ".join(["The answer explains the idea in plain words, step by step."] * 5)
LABELS = "ABCDEFGH"[:K]  # how both stacks name a prompt's answers


def prompt_text(i: int) -> str:
    return f"Prompt {i}: explain idea number {i} to a newcomer."


def answer_text(j: int) -> str:
    return f"Answer {j}. {FILLER}"


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
    rate: float = 0.0  # open loop: loops/s offered


class Labeler:
    """A simulated labeler: a token, one keep-alive connection, a random but valid ranking.

    loop_once is one "next task -> ranking" through our API; LabelStudioLabeler does the same
    through Label Studio's. Everything else (timing, statuses, the log) is shared."""

    scheme = "Bearer"
    timeout = CALL_TIMEOUT_S

    def __init__(self, user_id: int, token: str, base_url: str, seed: int):
        self.user_id = user_id
        self.rng = random.Random(seed)
        headers = {"Authorization": f"{self.scheme} {token}"}
        self.client = http1.Connection(base_url, headers, self.timeout)

    def start_loop(self, task: dict, log: list[Loop]) -> tuple[Loop, str, dict]:
        """Log the task and a random ranking of it; the ranking's URL and body to send."""
        ids = {c["label"]: c["id"] for c in task["completions"]}
        sent = self.rng.sample(list(ids), len(ids))
        loop = Loop(self.user_id, task["assignment_id"], task["prompt"]["id"], ids, sent)
        log.append(loop)
        url = f"/api/v1/assignments/{loop.assignment_id}/ranking"
        return loop, url, {"ranking": sent, "time_spent_ms": 1000}

    async def _call(self, phase: Phase, name: str, expected, method: str, url: str, body=None):
        """The answer's status and JSON body; (None, None) on a transport error or bad body."""
        start = time.perf_counter()
        try:
            status, content = await self.client.request(method, url, body)
            data = json.loads(content) if content else None
        except http1.HttpError as exc:
            phase.status[name][exc.kind] += 1
            phase.errors.append(f"{name}: {exc}")
            return None, None
        except ValueError as exc:
            phase.status[name][type(exc).__name__] += 1
            phase.errors.append(f"{name}: {status} {exc!r} {content[:200]!r}")
            return None, None
        phase.ms[name].append((time.perf_counter() - start) * 1000)
        phase.status[name][status] += 1
        if status not in expected:
            phase.errors.append(f"{name}: {status} {content[:200]!r}")
        return status, data

    async def loop_once(self, phase: Phase, log: list[Loop]) -> bool:
        """Ask for a task and rank it; False when there was no work or a call failed."""
        status, task = await self._call(phase, "next", (200, 204), "GET", "/api/v1/tasks/next")
        if status != 200:
            phase.no_work += status == 204
            return False
        loop, url, body = self.start_loop(task, log)
        loop.submit_status, answer = await self._call(phase, "ranking", (201,), "POST", url, body)
        if loop.submit_status in (200, 201):  # 200 is a replay: unexpected here, but acknowledged
            loop.ranking_id = answer["ranking_id"]
            phase.loops += 1
            return True
        return False


class LabelStudioLabeler(Labeler):
    """The same labeler on Label Studio: its labeling stream, then an annotation with a Ranker.

    Loop.assignment_id holds the task, ranking_id the annotation, and the answers are named by
    the same labels (A, B, ...) as ours."""

    scheme = "Token"  # its legacy API tokens (bench/labelstudio.py says why)
    timeout = LS_CALL_TIMEOUT_S

    def __init__(self, user_id: int, token: str, base_url: str, seed: int, project: int):
        super().__init__(user_id, token, base_url, seed)
        self.project = project

    async def loop_once(self, phase: Phase, log: list[Loop]) -> bool:
        url = f"/api/projects/{self.project}/next/"
        status, task = await self._call(phase, "next", (200, 404), "GET", url)
        if status != 200:
            phase.no_work += status == 404  # "There are no tasks for <user>"
            return False
        labels = [item["id"] for item in task["data"]["items"]]
        sent = self.rng.sample(labels, len(labels))
        loop = Loop(self.user_id, task["id"], task["data"]["prompt_id"], {}, sent)
        log.append(loop)
        body = {"result": labelstudio.ranking_result(sent), "lead_time": 1.0}
        url = f"/api/tasks/{loop.assignment_id}/annotations/"
        loop.submit_status, answer = await self._call(phase, "ranking", (201,), "POST", url, body)
        if loop.submit_status == 201:
            loop.ranking_id = answer["id"]
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


class Analyzer:
    """Stands in for autovacuum's ANALYZE on a server that has autovacuum off (this machine's
    PostgreSQL does, for CI; PostgreSQL's default and our compose have it on): ANALYZE of the
    run's database every `every` seconds while the load runs, on a connection of its own (a
    backend of that database, so its CPU counts as PostgreSQL's).

    Without fresh statistics PostgreSQL keeps the plans it cached in each connection while the
    tables were nearly empty or all slots open: the foreign-key check of each comparison row
    stays a sequential scan of the growing ranking table, the free-slot query walks the primary
    key past every slot taken, and PostgreSQL's CPU per loop grows with the run
    (docs/benchmarks.md, "Collector pauses, worker balance and stale statistics"). Autovacuum
    would analyze within its naptime (60 s by default), so `every` 0 measures a deployment's
    first minute on fresh tables."""

    def __init__(self, database_url: str, every: float):
        self.database_url, self.every = database_url, every
        self.runs, self.seconds = 0, 0.0
        self.active = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Analyzer":
        with psycopg.connect(self.database_url) as conn:
            (autovacuum,) = conn.execute("SHOW autovacuum").fetchone()
        self.active = autovacuum == "off" and self.every > 0
        if self.active:
            self._thread.start()
        return self

    def _run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self._stop.wait(self.every):
                start = time.perf_counter()
                conn.execute("ANALYZE")
                self.seconds += time.perf_counter() - start
                self.runs += 1

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.active:
            self._thread.join()

    def describe(self, name: str) -> str:
        if not self.active:
            return f"{name}: no ANALYZE by the bench (autovacuum on, or --analyze-every 0)"
        return (
            f"{name}: autovacuum is off on this server; the bench ran ANALYZE every "
            f"{self.every:g} s in its stead: {self.runs} times, {self.seconds:.1f} s in all"
        )


async def run_load(args, make_labelers: Callable[[], list[Labeler]], meter: CpuMeter, rates):
    """Warm up (one loop per labeler), then the measurements asked for (a latency run for each
    of `rates`); returns phases and log."""
    labelers = make_labelers()
    # In-flight calls end within their timeout; the margin only guards against a hang.
    slack = max(labeler.timeout for labeler in labelers) + 30
    log: list[Loop] = []
    phases = []
    try:
        warmup = Phase("warm-up")
        await asyncio.wait_for(closed_loop(labelers, warmup, log, 60, len(labelers)), 60 + slack)
        phases.append(warmup)
        runs = [("capacity", None)] if capacity_budget(args) else []
        runs += [("latency", rate) for rate in rates if latency_budget(args, rate)]
        for name, rate in runs:
            phase = Phase(name)
            if name == "capacity":
                seconds = args.seconds
                run = closed_loop(labelers, phase, log, seconds, capacity_budget(args))
            else:
                seconds, phase.rate = args.latency_seconds, rate
                run = open_loop(labelers, phase, log, rate, seconds, latency_budget(args, rate))
            before = meter.snapshot()
            await asyncio.wait_for(run, seconds + slack)
            after = meter.snapshot()
            phase.cpu = meter.cores(before, after)
            phase.connections = (len(after["postgres"]), after["sessions"] - before["sessions"])
            phases.append(phase)
    finally:
        await asyncio.gather(*(labeler.client.aclose() for labeler in labelers))
    return phases, log


def capacity_budget(args) -> int:
    """Loops the capacity run may do at most, which sizes the round."""
    return math.ceil(args.seconds * args.max_loops_per_s) if args.mode != "latency" else 0


def latency_budget(args, rate: float) -> int:
    """Loops a latency run may do at most (Poisson counts stay well under 1.2 x the mean over a
    minute)."""
    return math.ceil(rate * args.latency_seconds * 1.2) if args.mode != "capacity" else 0


def seed(n_prompts: int, n_labelers: int):
    """A round in labeling with n_prompts prompts x K completions; labelers with API tokens."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from django.db import connection

    from labelapp.access import LABELERS
    from labelapp.models import Completion, Prompt, text_hash
    from labelapp.services.rounds import create_round, start_labeling
    from labelapp.services.tokens import issue_token

    texts = [prompt_text(i) for i in range(n_prompts)]
    prompts = Prompt.objects.bulk_create(
        (Prompt(text=t, text_hash=text_hash(t), source="load") for t in texts), batch_size=5000
    )
    round_ = create_round(prompts, k=K, overlap=OVERLAP)
    Completion.objects.bulk_create(
        (
            Completion(prompt=p, round=round_, text=answer_text(j), source="load")
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


def verify(log: list[Loop], round_id: int) -> tuple[list[str], list[str]]:
    """Compare our database with the client log; returns (report lines, failures)."""
    from django.db.models import Count

    from labelapp.models import Assignment, Comparison, Ranking

    pairs = defaultdict(set)
    for ranking_id, chosen, rejected in Comparison.objects.filter(
        ranking__assignment__round_id=round_id
    ).values_list("ranking_id", "chosen_id", "rejected_id"):
        pairs[ranking_id].add((chosen, rejected))
    stored = {
        pk: (*rest, pairs[pk])
        for pk, *rest in Ranking.objects.filter(assignment__round_id=round_id).values_list(
            "pk", "assignment_id", "labeler_id", "order", "labels"
        )
    }

    def expected(loop: Loop) -> tuple:
        order = [loop.ids_by_label[label] for label in loop.sent]
        return (loop.assignment_id, loop.labeler, order, loop.sent, set(combinations(order, 2)))

    handed = {loop.assignment_id for loop in log}
    owner = dict(Assignment.objects.filter(pk__in=list(handed)).values_list("pk", "labeler_id"))
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
    return compare(log, stored, expected, owner, over_overlap, twice_db)


def verify_labelstudio(log: list[Loop], database_url: str, project: int):
    """Compare Label Studio's database with the client log, as verify() does ours."""
    stored, over_overlap, twice_db = labelstudio.stored_annotations(database_url, project)

    def expected(loop: Loop) -> tuple:  # its task, its labeler, the order sent, not a skip
        return (loop.assignment_id, loop.labeler, loop.sent, False)

    return compare(log, stored, expected, None, over_overlap, twice_db, labelstudio.NOUNS)


OUR_NOUNS = ("rankings", "assignments", "prompts held by more than one labeler")


def compare(log, stored: dict, expected, owner, over_overlap: int, twice_db: int, nouns=OUR_NOUNS):
    """The checks common to both stacks; returns (report lines, failures).

    stored: what the database holds for each acknowledged id (ranking, or annotation), compared
    with expected(loop); owner: the labeler each handed-out assignment belongs to, where the
    database records one; over_overlap, twice_db: counted in the database."""
    acked = [loop for loop in log if loop.ranking_id is not None]
    lost = [loop for loop in acked if loop.ranking_id not in stored]
    wrong = [
        loop
        for loop in acked
        if loop.ranking_id in stored and stored[loop.ranking_id] != expected(loop)
    ]
    unacked = set(stored) - {loop.ranking_id for loop in acked}

    holders = defaultdict(set)  # assignment (task) -> labelers it was handed to
    prompts_of = defaultdict(set)  # labeler -> (prompt, assignment) pairs handed to them
    for loop in log:
        holders[loop.assignment_id].add(loop.labeler)
        prompts_of[loop.labeler].add((loop.prompt_id, loop.assignment_id))
    shared = [
        a
        for a, who in holders.items()
        if len(who) > 1 or (owner is not None and owner.get(a) not in who)
    ]
    twice = sum(len(got) - len({p for p, _ in got}) for got in prompts_of.values())
    acks, handed, overlap = nouns
    lines = [
        f"acknowledged {acks} {len(acked)}: in the database with the order sent "
        f"{len(acked) - len(lost) - len(wrong)}, lost {len(lost)}, wrong {len(wrong)}; "
        f"stored but never acknowledged {len(unacked)}",
        f"{handed} handed out {len(holders)}: to two labelers"
        f"{' (or not the owner)' if owner is not None else ''} {len(shared)}; "
        f"{overlap} {over_overlap}",
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


@dataclass
class Stack:
    """One stack under load: how its calls are named, the rate it is offered, what it showed."""

    name: str
    calls: dict[str, str]  # call -> how it is printed
    rates: list[float]  # loops/s offered, one latency run each
    goals: bool  # our goals apply (capacity, p99)
    phases: list[Phase] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def phase(self, name: str, rate: float | None = None) -> Phase | None:
        return next(
            (p for p in self.phases if p.name == name and (rate is None or p.rate == rate)), None
        )


def loops_per_s(phase: Phase) -> float:
    return phase.loops / phase.elapsed if phase.elapsed else 0.0


def describe(phase: Phase, args, stack: Stack) -> tuple[list[str], list[str]]:
    """Summary lines of one phase, and the goals it missed."""
    rate = loops_per_s(phase)
    head = {
        "warm-up": f"warm-up: one loop per labeler, {phase.loops} loops",
        "capacity": f"capacity: {args.labelers} labelers, no think time, {phase.elapsed:.1f} s: "
        f"{phase.loops} loops, {rate:.1f} loops/s",
        "latency": f"latency: Poisson {phase.rate:g} loops/s offered for "
        f"{args.latency_seconds:g} s: {phase.loops} loops, {rate:.1f} loops/s done",
    }[phase.name]
    lines, missed = [head], []
    width = max(len(label) for label in stack.calls.values())
    for name, label in stack.calls.items():
        ms = sorted(phase.ms[name])
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(phase.status[name].items(), key=str))
        p50, p95, p99 = (percentile(ms, p) for p in (50, 95, 99))
        worst = ms[-1] if ms else math.nan
        lines.append(
            f"  {label:{width}} n={len(ms):6d}  p50 {p50:6.1f}  p95 {p95:6.1f}  p99 {p99:6.1f}"
            f"  max {worst:6.1f} ms  [{statuses}]"
        )
        if (
            stack.goals
            and phase.name == "latency"
            and phase.rate == args.rate
            and not p99 < GOAL_P99_MS
        ):
            missed.append(f"p99 of {name} < {GOAL_P99_MS} ms")
    if stack.goals and phase.name == "capacity" and rate < GOAL_LOOPS_PER_S:
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
            per_loop = cpu_per_loop(phase)
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
            f"for {sum(len(ms) for ms in phase.ms.values())} calls"
            + ("; the CPU of closed ones is not counted above" if opened > open_now else "")
        )
    if phase.fell_behind:
        lines.append("  the offered rate was not kept up: arrivals were still waiting at the end")
    lines.append(f"  errors {len(phase.errors)}, no work {phase.no_work}")
    lines += [f"    {e}" for e in phase.errors[:5]]
    return lines, missed


def cpu_per_loop(phase: Phase) -> dict[str, float]:
    """ms of CPU per loop of the client, gunicorn and PostgreSQL (the backends still open)."""
    rate = loops_per_s(phase)
    return {k: phase.cpu[k] / rate * 1000 for k in ("client", "gunicorn", "postgres")}


def side_by_side(args, ours: Stack, theirs: Stack) -> tuple[list[str], list[str]]:
    """A markdown table of both stacks with the ratios, and the comparison goals missed."""

    def p50_p99(phase: Phase | None, call: str) -> tuple[float, float]:
        values = sorted(phase.ms[call]) if phase else []
        return percentile(values, 50), percentile(values, 99)

    def cpu(phase: Phase) -> str:
        """CPU per loop; a lower bound (>=) where PostgreSQL connections closed meanwhile."""
        if not (phase and phase.cpu and phase.loops):
            return "-"
        open_now, opened = phase.connections
        return f"{'>= ' if opened > open_now else ''}{sum(cpu_per_loop(phase).values()):.1f}"

    name = theirs.name
    lines = [
        f"side by side: {args.labelers} labelers each; capacity {args.seconds:g} s with no think "
        f"time; latency runs {args.latency_seconds:g} s of Poisson arrivals",
        "",
        f"| | ours | {name} | {name} / ours |",
        "|---|---|---|---|",
    ]
    missed = []
    a, b = ours.phase("capacity"), theirs.phase("capacity")
    if a and b:
        ratio = loops_per_s(a) / loops_per_s(b) if loops_per_s(b) else math.inf
        lines.append(
            f"| capacity, loops/s | {loops_per_s(a):.1f} | {loops_per_s(b):.1f} | ours "
            f"{ratio:.1f}x as many (goal >= {GOAL_RATIO:g}x) |"
        )
        if not ratio >= GOAL_RATIO:
            missed.append(f"capacity >= {GOAL_RATIO:g}x {name}'s")
    runs = [("capacity", a, b)]
    # Latency at the rate offered to both (Label Studio's): our p99 against its p50 there.
    same = next((r for r in theirs.rates if ours.phase("latency", r)), None)
    if same is not None:
        runs.append(
            (f"latency at {same:g} loops/s", *(s.phase("latency", same) for s in (ours, theirs)))
        )
    for label, a, b in runs:
        if not (a and b):
            continue
        if label != "capacity":
            lines.append(
                f"| {label}: loops/s done | {loops_per_s(a):.1f} | {loops_per_s(b):.1f} | |"
            )
        for call in CALLS:
            (a50, a99), (b50, b99) = p50_p99(a, call), p50_p99(b, call)
            cell = f"{b50 / a50:.1f}x / {b99 / a99:.1f}x"
            if label != "capacity":
                below = a99 < b50
                cell += f"; our p99 {'<' if below else '>='} its p50 (goal <)"
                if not below:
                    missed.append(f"our p99 of {call} below its p50 at {same:g} loops/s")
            lines.append(
                f"| {label}: {call} p50 / p99, ms | {a50:.1f} / {a99:.1f} | {b50:.1f} / {b99:.1f} "
                f"| {cell} |"
            )
        lines.append(f"| {label}: CPU per loop, ms | {cpu(a)} | {cpu(b)} | |")
    for rate in ours.rates:
        a = ours.phase("latency", rate)
        if a and not theirs.phase("latency", rate):
            (n50, n99), (r50, r99) = p50_p99(a, "next"), p50_p99(a, "ranking")
            lines.append(
                f"| latency at {rate:g} loops/s: loops/s done; next, ranking p50 / p99, ms | "
                f"{loops_per_s(a):.1f}; {n50:.1f} / {n99:.1f}, {r50:.1f} / {r99:.1f} | not run | |"
            )
    lines.append(
        "(CPU per loop: client + gunicorn + PostgreSQL backends still open at the end of the "
        "run; >= where connections closed during it, whose CPU is not counted)"
    )
    return lines, missed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--target", choices=["ours", "labelstudio", "both"], default="both",
        help="the stack(s) to load: both runs ours, then Label Studio, and compares them",
    )  # fmt: skip
    parser.add_argument("--labelers", type=int, default=64, help="simulated labelers")
    parser.add_argument("--seconds", type=float, default=30, help="length of the capacity run")
    parser.add_argument("--rate", type=float, default=100, help="loops/s offered (latency)")
    parser.add_argument(
        "--ls-rate", type=float, default=3,
        help="loops/s offered to Label Studio (latency): a load it takes on this machine",
    )  # fmt: skip
    parser.add_argument(
        "--ls-conn-max-age", type=int, default=60,
        help="Label Studio's CONN_MAX_AGE: 60 keeps PostgreSQL connections, as ours does (and "
        "lets their CPU be counted); 0, its own default, opens one per request",
    )  # fmt: skip
    parser.add_argument("--latency-seconds", type=float, default=60, help="length of latency run")
    parser.add_argument("--mode", choices=["capacity", "latency", "both"], default="both")
    # 2 cores: 3 processes (cores + 1, so one waiting on PostgreSQL leaves both cores busy),
    # 4 threads each to overlap database round trips; threads also keep connections alive,
    # which gunicorn's sync workers refuse. --threads 1 gives sync workers. Label Studio runs
    # under the same settings.
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (gthread)")
    parser.add_argument(
        "--analyze-every", type=float, default=10,
        help="seconds between the bench's ANALYZEs where autovacuum is off (0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/loadtest",
        help="a PostgreSQL database that is DROPPED and created anew",
    )  # fmt: skip
    parser.add_argument(
        "--ls-database-url", default="postgres://postgres@127.0.0.1:5432/labelstudio",
        help="Label Studio's PostgreSQL database, DROPPED and created anew",
    )  # fmt: skip
    parser.add_argument(
        "--max-loops-per-s", type=float, default=MAX_LOOPS_PER_S,
        help="capacity's loop budget per second, which sizes the round (above the ~490 req/s of "
        "a bare Django view on this machine)",
    )  # fmt: skip
    parser.add_argument(
        "--min-prompts", type=int, default=25_000,
        help="the round has at least this many prompts: a query that reads the whole round "
        "must show its cost even in a short run",
    )  # fmt: skip
    return parser.parse_args()


def load_server(args, stack: Stack, env: dict, database_url: str, make_labelers, *,
                ready=None, prepare=None, noise=(), **gunicorn):  # fmt: skip
    """Serve one stack under gunicorn, load it, stop it; returns the client log and prepare's
    result. prepare(base_url) runs once the server answers; make_labelers(base_url, prepared)
    gives the labelers."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    prepared = None
    with tempfile.TemporaryFile("w+") as server_log:
        server = start_gunicorn(args, port, env, server_log, **gunicorn)
        try:
            wait_ready(server, base_url, workers=args.workers, **(ready or {}))
            prepared = prepare(base_url) if prepare else None
            meter = CpuMeter(server.pid, database_url)
            run = run_load(args, lambda: make_labelers(base_url, prepared), meter, stack.rates)
            with Analyzer(database_url, args.analyze_every) as analyzer:
                stack.phases, log = asyncio.run(run)
            print(analyzer.describe(stack.name))
        finally:
            stop(server)
            server_log.seek(0)
            text = server_log.read()
    lines = [
        line for line in text.splitlines() if line.strip() and not any(n in line for n in noise)
    ]
    if lines:
        # Repeated messages once each, with their count (numbers and timestamps masked).
        kinds = Counter(re.sub(r"\d+", "N", line) for line in lines)
        common = "\n".join(f"  {n:5d} x {kind[:300]}" for kind, n in kinds.most_common(8))
        tail = "\n".join(line[:300] for line in lines[-8:])
        print(
            f"{stack.name}: gunicorn's log, {len(lines)} lines; the most frequent:\n{common}\n"
            f"  last lines:\n{tail}"
        )
    return log, prepared


def report(args, stack: Stack, checks: tuple[list[str], list[str]]) -> None:
    """Print one stack's phases and checks; note its failures and missed goals."""
    print(f"--- {stack.name}")
    for phase in stack.phases:
        lines, phase_missed = describe(phase, args, stack)
        print("\n".join(lines))
        stack.missed += phase_missed
        if phase.errors:
            stack.failures.append(f"{stack.name} {phase.name}: {len(phase.errors)} errors")
        if phase.no_work:
            stack.failures.append(
                f"{stack.name} {phase.name}: ran out of work; raise --max-loops-per-s"
            )
    lines, bad = checks
    print("database vs client log:\n  " + "\n  ".join(lines))
    stack.failures += [f"{stack.name}: check failed: {name}" for name in bad]


def run_ours(args, rates: list[float], n_prompts: int) -> Stack:
    """Our stack: migrate and seed a round, serve it, load it, check the database."""
    stack = Stack("ours", {"next": "GET  tasks/next", "ranking": "POST .../ranking"}, rates, True)
    # No hidden repeats: Label Studio has none, and the checks expect one ranking, with all its
    # comparisons, per labeler and prompt.
    env = site_env(args.database_url, REPEAT_PERCENT="0")
    os.environ.update(env)

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
        f"ours: database {args.database_url}: migrated and seeded in "
        f"{time.perf_counter() - started:.1f} s (round {round_.number}: {n_prompts} prompts x "
        f"{K} completions, overlap {OVERLAP}; {args.labelers} labelers)"
    )
    print(
        f"ours: python {platform.python_version()}, django {django.get_version()}, gunicorn "
        f"{_version('gunicorn')} ({server_kind(args)}), client bench/http1.py, "
        f"psycopg {psycopg.__version__}"
    )

    def make_labelers(base_url, _):
        return [Labeler(uid, token, base_url, seed=i) for i, (uid, token) in enumerate(tokens)]

    noise = ("No directory at", "mw_instance = middleware", "Unauthorized: /api/v1/tasks/next")
    log, _ = load_server(args, stack, env, args.database_url, make_labelers, noise=noise)
    report(args, stack, verify(log, round_.pk))
    return stack


def run_labelstudio(args, n_prompts: int) -> Stack:
    """Label Studio: its database, users and project with the same prompts, served, loaded and
    checked the same way (bench/labelstudio.py)."""
    stack = Stack(
        "Label Studio",
        {"next": "GET  projects/{id}/next", "ranking": "POST tasks/{id}/annotations"},
        [args.ls_rate],
        False,
    )
    with tempfile.TemporaryDirectory(prefix="labelstudio-") as data_dir:
        recreate_database(args.ls_database_url)
        env = labelstudio.environment(args.ls_database_url, Path(data_dir), args.ls_conn_max_age)
        made = labelstudio.setup(env, args.labelers)
        print(
            f"Label Studio: database {args.ls_database_url}: migrated in "
            f"{made['migrate_seconds']:.1f} s, {args.labelers} labelers with API tokens in "
            f"{made['seconds'] - made['migrate_seconds']:.1f} s"
        )
        print(
            f"Label Studio: label-studio {made['label_studio']}, python {made['python']}, django "
            f"{made['django']}, gunicorn {made['gunicorn']} ({server_kind(args)}), CONN_MAX_AGE "
            f"{args.ls_conn_max_age}"
        )
        tasks = [
            labelstudio.task_data(
                i, prompt_text(i), [(LABELS[j], answer_text(j)) for j in range(K)]
            )
            for i in range(n_prompts)
        ]

        def prepare(base_url):
            project, seconds = labelstudio.create_project(base_url, made["admin_token"], tasks)
            print(
                f"Label Studio: project {project}: {len(tasks)} tasks ({K} answers each, overlap "
                f"1) imported through its API in {seconds:.1f} s"
            )
            return project

        def make_labelers(base_url, project):
            return [
                LabelStudioLabeler(uid, token, base_url, seed=i, project=project)
                for i, (uid, token) in enumerate(made["labelers"])
            ]

        noise = (
            "Accessing the database during app initialization", "warnings.warn(", "=> ",
            "Read environment variables from", "SECRET_KEY",
        )  # fmt: skip
        log, project = load_server(
            args, stack, env, args.ls_database_url, make_labelers,
            ready={"path": "/health", "status": 200, "seconds": 180}, prepare=prepare,
            noise=noise, python=labelstudio.PYTHON, app=labelstudio.APP,
            cwd=labelstudio.package_dir(),
        )  # fmt: skip
    report(args, stack, verify_labelstudio(log, args.ls_database_url, project))
    return stack


def server_kind(args) -> str:
    if args.threads > 1:
        return f"{args.workers} x gthread, {args.threads} threads"
    return f"{args.workers} x sync"


def main() -> int:
    args = parse_args()
    if args.target != "ours" and (reason := labelstudio.missing()):
        sys.exit(f"Label Studio: {reason}; or --target ours")
    # Side by side, ours also takes the rate offered to Label Studio: latency at the same load.
    rates = [args.rate]
    if args.target == "both" and args.ls_rate != args.rate:
        rates.append(args.ls_rate)
    # Both stacks get the same prompts, as many as our round's loop budgets need.
    budgets = capacity_budget(args) + sum(latency_budget(args, rate) for rate in rates)
    n_prompts = max(args.labelers + budgets, args.min_prompts)
    print(
        f"{platform.machine()}, {os.cpu_count()} cores; load average (1, 5, 15 min) before the run "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    stacks = []
    if args.target in ("ours", "both"):
        stacks.append(run_ours(args, rates, n_prompts))
    if args.target in ("labelstudio", "both"):
        stacks.append(run_labelstudio(args, n_prompts))
    failures = [f for stack in stacks for f in stack.failures]
    missed = [f"{stack.name}: {m}" for stack in stacks for m in stack.missed]
    if len(stacks) == 2:
        lines, compared = side_by_side(args, *stacks)
        print("\n".join(lines))
        missed += [f"side by side: {m}" for m in compared]
    print(
        "load average (1, 5, 15 min) after the run "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    if not any(stack.goals for stack in stacks):
        print("goals: none for Label Studio alone (the goals are ours, and the comparison's)")
    else:
        print("goals: " + ("all met" if not missed else "missed " + "; ".join(missed)))
    print("RESULT: " + ("OK" if not failures else "FAILED: " + "; ".join(failures)))
    return 1 if failures else 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    sys.exit(main())
