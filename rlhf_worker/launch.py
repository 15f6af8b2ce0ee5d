"""One training step in N processes: `accelerate launch` in a subprocess of the Celery worker.

The worker (parent) writes the step's already-read inputs to `inputs.json` in a work directory
and starts `accelerate launch ... -m rlhf_worker.launch <work_dir>` in its own process group.
Every launched process (child) runs the same training function on the same inputs; the
function shares the work between them (rlhf_worker/training/distributed.py). Rank 0 appends
each step's progress to `progress.jsonl`, which the parent relays to the run, and writes
`result.json` atomically once every process is through the step (the model saved). The
children never touch the database, and the parent never touches CUDA (fork and CUDA do not
mix): it only starts, watches and stops.

If the parent is interrupted (an exception, a time limit, the task revoked) or dies, the process
group is stopped; a child that fails before result.json makes the step fail, with the end of
what each process printed (their own logs, under `ranks/`) and of the launch log. A failure
after result.json (gloo can abort a process in the teardown) is logged, and the step stands.

Django-free on both sides: the worker's settings come in as a LaunchSettings.
"""

import ctypes
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# What a launched step may run: the training functions, by module:name.
TRAINING_FUNCTIONS = frozenset(
    {
        "rlhf_worker.training.reward:train_reward_model",
        "rlhf_worker.training.sft:sft_model_dir",
        "rlhf_worker.training.ppo:train_ppo",
        "rlhf_worker.training.online:train_online",
        "rlhf_worker.training.dpo:train_dpo",
    }
)
# The modules whose dataclasses a step's inputs may hold (configs, and the reward model's rankings).
DATACLASS_MODULES = ("rlhf_worker.training.configs", "rlhf_worker.training.rankings")
HEARTBEAT_SECONDS = 1.0  # the parent tells the run it is alive at least this often
STOP_GRACE_SECONDS = 10.0  # SIGTERM, then SIGKILL after this long
REPORT_CHARS = 1800  # of the logs in a failed step's error (a failed round keeps 2,000 chars)

StepCallback = Callable[[int, int, dict], None]
logger = logging.getLogger(__name__)


class LaunchFailedError(RuntimeError):
    """The launched processes exited with an error (or were killed) before writing a result."""


@dataclasses.dataclass
class LaunchSettings:
    """How a worker launches a step (from TRAINING_PROCESSES, ACCELERATE_CONFIG, TORCH_THREADS)."""

    processes: int = 1
    config_file: str = ""  # an accelerate config: DeepSpeed, FSDP, several machines
    threads_per_process: int = 1
    timeout: float | None = None  # seconds; None waits as long as the step takes

    @property
    def enabled(self) -> bool:
        """False: the step runs in the worker's process, as it always did."""
        return self.processes > 1 or bool(self.config_file)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(settings: LaunchSettings) -> list[str]:
    """`accelerate launch` and its options, up to the program it runs.

    Without a config file: N processes on this host through accelerate's torchrun-based
    launcher (`--multi_gpu`, which on a host without GPUs runs N CPU processes on gloo;
    accelerate's `--cpu` flag alone starts one process, it leaves several to mpirun). With one,
    the file says everything (distributed type, processes, machines, DeepSpeed/FSDP).
    """
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if settings.config_file:
        cmd += ["--config_file", settings.config_file]
    else:
        if settings.processes > 1:
            cmd += ["--multi_gpu", "--main_process_port", str(_free_port())]
        cmd += ["--num_processes", str(settings.processes), "--num_machines", "1"]
        cmd += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    return [*cmd, "--num_cpu_threads_per_process", str(settings.threads_per_process)]


def launch_command(settings: LaunchSettings, work_dir: Path) -> list[str]:
    """The command line of a launched step: every process runs this module on `work_dir`.

    Each process's stdout and stderr also go to files of their own under `work_dir/ranks`
    (torchrun's --tee), so that a failure can name what the failing process printed.
    """
    ranks = ["--tee", "3", "--log_dir", str(work_dir / "ranks")]
    return [*accelerate_launch(settings), *ranks, "-m", "rlhf_worker.launch", str(work_dir)]


def _encode(value):
    """JSON for a training function's arguments: paths as strings, dataclasses (configs,
    rankings) by module and class name."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = f"{type(value).__module__}:{type(value).__name__}"
        return {"__dataclass__": kind, "fields": dataclasses.asdict(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(value):
    if isinstance(value, dict) and "__dataclass__" in value:
        import importlib

        module, name = value["__dataclass__"].split(":")
        if module not in DATACLASS_MODULES:
            raise ValueError(f"a step's inputs may not hold a {module}.{name}")
        return getattr(importlib.import_module(module), name)(**value["fields"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    return value


def function_name(function: Callable) -> str:
    """module:name of a training function; refuses one a launched step may not run."""
    name = f"{function.__module__}:{function.__qualname__}"
    if name not in TRAINING_FUNCTIONS:
        raise ValueError(f"{name} is not a training function a launched step runs")
    return name


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Get `sig` when the parent process dies (Linux prctl PR_SET_PDEATHSIG).

    The launcher asks for SIGTERM when the worker dies, and stops its trainers on it; each
    trainer asks for SIGKILL when the launcher dies (torchrun starts every trainer in a session
    of its own, out of reach of a signal to the launcher's process group).
    """
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it after STOP_GRACE_SECONDS."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGTERM:
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


class _ProgressRelay:
    """Reads the complete lines rank 0 appended to progress.jsonl since the last read."""

    def __init__(self, path: Path, on_step: StepCallback | None) -> None:
        self.path, self.on_step, self.offset, self.fraction = path, on_step, 0, 0.0

    def relay(self) -> bool:
        """Pass new steps to on_step; True if there were any."""
        if not self.path.exists():
            return False
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        lines = complete.decode().splitlines()
        for line in lines:
            step = json.loads(line)
            self.fraction = step["step"] / max(step["total"], 1)
            if self.on_step is not None:
                self.on_step(step["step"], step["total"], step["metrics"])
        return bool(lines)


def launch_training(
    function: Callable,
    args: tuple | list,
    kwargs: dict,
    work_dir: str | Path,
    settings: LaunchSettings,
    on_step: StepCallback | None = None,
    heartbeat: Callable[[float], None] | None = None,
) -> dict:
    """Run `function(*args, **kwargs, on_step=...)` under `accelerate launch`; its result.

    `on_step` gets the steps rank 0 reports, as in a one-process step; `heartbeat(fraction)` is
    called when no step came for HEARTBEAT_SECONDS (while the processes load models, say).
    `work_dir` (on storage every machine reads, for several hosts) holds inputs, progress, the
    launch log and the result; it is removed after a success and kept after a failure.
    """
    work = Path(work_dir)
    shutil.rmtree(work, ignore_errors=True)  # a previous attempt's files say nothing now
    work.mkdir(parents=True)
    spec = {"function": function_name(function), "args": _encode(list(args))}
    spec["kwargs"] = _encode(kwargs)
    (work / "inputs.json").write_text(json.dumps(spec))
    env = {**os.environ, "TORCH_THREADS": str(settings.threads_per_process)}
    relay = _ProgressRelay(work / "progress.jsonl", on_step)
    started = last_report = time.monotonic()
    with (work / "launch.log").open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 (our own command line)
            launch_command(settings, work),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, stopped as one
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        try:
            while proc.poll() is None:
                time.sleep(0.2)
                now = time.monotonic()
                if relay.relay():
                    last_report = now
                elif heartbeat is not None and now - last_report >= HEARTBEAT_SECONDS:
                    heartbeat(relay.fraction)
                    last_report = now
                if settings.timeout is not None and now - started > settings.timeout:
                    raise TimeoutError(f"the launched step ran over {settings.timeout:.0f} s")
            relay.relay()
        finally:
            _stop(proc)
    result = work / "result.json"
    if not result.exists():
        raise LaunchFailedError(
            f"accelerate launch exited with {proc.returncode} (log: {work / 'launch.log'}):\n"
            + failure_report(work)
        )
    if proc.returncode != 0:  # after every process finished the step: in the teardown
        logger.warning(
            "the launched step completed, then accelerate launch exited with %s:\n%s",
            proc.returncode,
            failure_report(work),
        )
    metrics = json.loads(result.read_text())
    shutil.rmtree(work, ignore_errors=True)
    return metrics


def _last_lines(path: Path, chars: int) -> str:
    """The last lines of a log that fit in `chars`, without colours and progress bars."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", path.read_bytes()[-64_000:].decode(errors="replace"))
    lines = [line.strip() for line in re.split(r"[\r\n]+", text)]
    lines = [line for line in lines if line and "%|" not in line]
    kept: list[str] = []
    for line in reversed(lines):
        if sum(map(len, kept)) + len(kept) + len(line) > chars:
            break
        kept.append(line)
    if not kept and lines:
        kept = [lines[-1][-chars:]]
    return "\n".join(reversed(kept))


def failure_report(work_dir: Path, chars: int = REPORT_CHARS) -> str:
    """What a failed launch printed, in about `chars`: the end of each process's stderr that
    has any (the exception or the abort message of the process that failed first), then the
    end of the launcher's own log (which processes failed, with which exit codes)."""
    logs = sorted(work_dir.glob("ranks/**/attempt_*/*/stderr.log"))
    logs = [log for log in logs if log.stat().st_size] + [work_dir / "launch.log"]
    parts = []
    for log in logs:
        if log.exists() and (text := _last_lines(log, chars // len(logs))):
            name = f"rank {log.parent.name}" if log.name == "stderr.log" else "launcher"
            parts.append(f"[{name}] {text}")
    return "\n".join(parts)


def run_launched_step(work_dir: Path) -> None:
    """The body of every launched process: run the step's function on its inputs."""
    import importlib

    import torch
    from accelerate import PartialState

    _die_with_parent(signal.SIGKILL)
    if os.getppid() == 1:  # the launcher died before the line above
        sys.exit("the launcher is gone")
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
    spec = json.loads((work_dir / "inputs.json").read_text())
    if spec["function"] not in TRAINING_FUNCTIONS:
        raise ValueError(f"{spec['function']} is not a training function")
    module, name = spec["function"].split(":")
    function = getattr(importlib.import_module(module), name)
    # Joins the launcher's process group. Without cpu=True, a process on a host without GPUs
    # would not join (accelerate only takes the launcher's environment for a GPU group).
    state = PartialState(cpu=not torch.cuda.is_available())
    progress = work_dir / "progress.jsonl"

    def on_step(step: int, total: int, metrics: dict) -> None:
        with progress.open("a") as f:
            f.write(json.dumps({"step": step, "total": total, "metrics": metrics}) + "\n")

    kwargs = _decode(spec["kwargs"])
    if state.is_main_process:
        kwargs["on_step"] = on_step
    result = function(*_decode(spec["args"]), **kwargs)
    state.wait_for_everyone()  # every process is through the step's last collective
    if state.is_main_process:
        _write_atomically(work_dir / "result.json", json.dumps(result))
    # Every process leaves the group before it exits. Even so, gloo can abort a process whose
    # peer closed its connections first; result.json already says the step is complete.
    state.destroy_process_group()


if __name__ == "__main__":
    run_launched_step(Path(sys.argv[1]))
