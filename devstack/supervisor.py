"""Process supervision: start the servers so that none can outlive the launcher, stop them once.

- Every child goes through ``die_with_parent`` (``PR_SET_PDEATHSIG``): whatever way the launcher
  ends, SIGKILL included, the kernel ends its children.
- Each server runs in its own session (a signal to its group reaches all its processes) and is
  recorded in ``<data>/pids/<name>.json``. A launcher takes ``<data>/pids/launcher.lock`` first:
  if another live launcher holds it, it stops with a message; if not, any process still recorded
  there was left by an earlier one (it ended before the kernel's signal could be set, or was an
  older version), and it is stopped, checked by pid *and* start time so that a reused pid is
  never hit.
- Stop signals (SIGINT, SIGTERM, SIGHUP) only set a flag, which the waits of the launcher check
  (``checkpoint``); so a signal never interrupts a start half-way, and one that comes during the
  stop is logged and ignored. SIGINT is handled explicitly: a background job (``make run &``)
  starts with it ignored.
- ``stop`` is idempotent and bounded: each server gets its stop signal and ``stop_timeout``
  seconds, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PYTHON = sys.executable
WRAPPER = Path(__file__).resolve().parent / "die_with_parent.py"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
KILL_WAIT_SECONDS = 5.0


def log(message: str) -> None:
    # Never let a closed terminal or pipe (`make test | head`) abort stopping the services.
    with contextlib.suppress(OSError):
        print(f"[stack] {message}", flush=True)


def _log_from_signal_handler(message: str) -> None:
    # A handler may run while the main code is inside print(): buffered stdout would raise a
    # reentrant-call error there, so write straight to the file descriptor.
    with contextlib.suppress(OSError):
        os.write(sys.stdout.fileno(), f"[stack] {message}\n".encode())


@dataclass(frozen=True)
class RunAs:
    """Who a child runs as: by default the launcher's user; else in a user namespace as the uid
    ``userns_uid`` (which stands for the launcher's), or as the system user ``user``."""

    userns_uid: int | None = None
    user: str | None = None

    def options(self) -> list[str]:
        if self.userns_uid is not None:
            return ["--userns", str(self.userns_uid)]
        return ["--user", self.user] if self.user else []


def command_for(argv: list[str], *, run_as: RunAs = RunAs()) -> list[str]:
    """``argv`` wrapped so that the kernel kills it when this process ends (see die_with_parent)."""
    return [PYTHON, "-I", "-S", str(WRAPPER), str(os.getpid()), *run_as.options(), "--", *argv]


class StopRequested(Exception):
    """A stop signal arrived: stop every process this launcher started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass
class Managed:
    name: str
    popen: subprocess.Popen[bytes]
    stop_signal: int
    stop_timeout: float
    record: Path | None


class Supervisor:
    """The processes one launcher started, stopped once, in reverse order, each within a bound.

    ``data`` is where the pid files go (none without it). Start children from the main thread:
    the kernel's signal follows the thread that started them.
    """

    def __init__(self, data: Path | None = None) -> None:
        self.data = data
        self.processes: list[Managed] = []
        self.stop_signal: int | None = None
        self._stopping = False
        self._lock_fd: int | None = None

    # --- signals ---------------------------------------------------------------------------

    def handle_signals(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.stop_signal is not None or self._stopping:
            _log_from_signal_handler(f"{name}: already stopping; ignored")
            return
        self.stop_signal = signum

    def checkpoint(self) -> None:
        """Raise StopRequested if a stop signal came: the launcher's waits call this."""
        if self.stop_signal is not None and not self._stopping:
            raise StopRequested(self.stop_signal)

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))
            self.checkpoint()

    def wait_until(self, check: Callable[[], bool], *, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.checkpoint()
            if check():
                return
            self.sleep(0.2)
        raise SystemExit(f"[stack] {what} did not become ready within {timeout:.0f}s")

    # --- the data folder: one launcher at a time, and the leftovers of an earlier one ---------

    def claim(self) -> None:
        """Take the data folder, stopping what an earlier launcher left running there."""
        assert self.data is not None
        pids = self.data / "pids"
        pids.mkdir(parents=True, exist_ok=True)
        fd = os.open(pids / "launcher.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode().strip() or "?"
            os.close(fd)
            raise SystemExit(
                f"[stack] another launcher (pid {other}) is using {self.data}: stop it first "
                f"(kill {other}), or give this one its own STACK_DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        stop_leftovers(pids)

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- starting --------------------------------------------------------------------------

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        logfile: Path | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 15.0,
        run_as: RunAs = RunAs(),
    ) -> subprocess.Popen[bytes]:
        """Start a server in its own session; it dies with this process, and is recorded."""
        output = open(logfile, "ab") if logfile else None  # noqa: SIM115 (owned by the child)
        popen = subprocess.Popen(
            command_for(argv, run_as=run_as),
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: a signal reaches all its children
        )
        if output:
            output.close()
        record = write_record(self.data, name, popen.pid, stop_signal, stop_timeout) if self.data else None
        self.processes.append(Managed(name, popen, stop_signal, stop_timeout, record))
        return popen

    def run(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        own_session: bool = True,
        run_as: RunAs = RunAs(),
        cwd: Path | str = ROOT,
        quiet: bool = False,
    ) -> int:
        """Run a command to its end (initdb, migrate, pytest) and return its exit code; on a stop
        signal, stop it (SIGTERM, then SIGKILL after 30 s) and raise StopRequested.

        ``own_session=False`` leaves it in the launcher's process group and terminal, so that
        Ctrl-C and a debugger's prompt reach it as they would reach the launcher.
        """
        popen = subprocess.Popen(
            command_for(argv, run_as=run_as),
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL if quiet else None,
            start_new_session=own_session,
        )
        while True:
            try:
                return popen.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if self.stop_signal is not None:
                log(f"stopping {name}")
                _stop(Managed(name, popen, signal.SIGTERM, 30.0, None), group=own_session)
                raise StopRequested(self.stop_signal)

    # --- watching and stopping -------------------------------------------------------------

    def check_alive(self) -> Managed | None:
        for process in self.processes:
            if process.popen.poll() is not None:
                return process
        return None

    def stop(self) -> None:
        """Stop every process, last started first, each within its bound. A second call, or a
        signal, during the stop changes nothing."""
        if self._stopping:
            return
        self._stopping = True
        try:
            for process in reversed(self.processes):
                if process.popen.poll() is None:
                    log(f"stopping {process.name}")
                _stop(process, group=True)
                if process.record is not None:
                    process.record.unlink(missing_ok=True)
            self.processes.clear()
        finally:
            self._stopping = False
            self.release()


def _stop(process: Managed, *, group: bool) -> None:
    """Its stop signal, ``stop_timeout`` seconds, then SIGKILL; and SIGKILL for any process
    left in its group once it has gone (a worker of gunicorn's, say)."""
    pid = process.popen.pid
    send = (lambda signum: os.killpg(pid, signum)) if group else process.popen.send_signal
    if process.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            send(process.stop_signal)
        try:
            process.popen.wait(timeout=process.stop_timeout)
        except subprocess.TimeoutExpired:
            log(f"{process.name} did not stop within {process.stop_timeout:.0f}s; killing it")
    if group or process.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            send(signal.SIGKILL)
    try:
        process.popen.wait(timeout=KILL_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        log(f"{process.name} (pid {pid}) survived SIGKILL for {KILL_WAIT_SECONDS:.0f}s")


# --- pid records ---------------------------------------------------------------------------


@dataclass
class Record:
    """What ``<data>/pids/<name>.json`` says of a server a launcher started."""

    name: str
    pid: int
    start_time: int
    boot_id: str
    stop_signal: int
    stop_timeout: float
    order: float

    def is_running(self) -> bool:
        """Whether that very process still runs: same boot, same pid, same start time."""
        return self.boot_id == _boot_id() and _start_time(self.pid) == self.start_time


def write_record(data: Path, name: str, pid: int, stop_signal: int, stop_timeout: float) -> Path | None:
    """Record a server this launcher started in ``<data>/pids/<name>.json``."""
    started = _start_time(pid)
    if started is None:  # already gone: nothing to find later
        return None
    path = data / "pids" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = Record(name, pid, started, _boot_id(), int(stop_signal), stop_timeout, time.time())
    path.write_text(json.dumps(asdict(record)))
    return path


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    if fields[0] in {"Z", "X"}:
        return None
    return int(fields[19])


def is_running(pid: int) -> bool:
    """Whether the process runs: a zombie has ended, though its pid still answers signals."""
    return _start_time(pid) is not None


def stop_leftovers(pids: Path) -> list[str]:
    """Stop the processes recorded in ``pids`` that still run (last started first); forget the
    records of those that don't. Returns the names of those it stopped."""
    records = []
    for path in pids.glob("*.json"):
        try:
            records.append((Record(**json.loads(path.read_text())), path))
        except (OSError, ValueError, TypeError):
            path.unlink(missing_ok=True)
    stopped = []
    for record, path in sorted(records, key=lambda item: item[0].order, reverse=True):
        if record.is_running():
            log(f"stopping {record.name} (pid {record.pid}), left running by an earlier launcher")
            _stop_leftover(record)
            if record.is_running():
                raise SystemExit(
                    f"[stack] {record.name} (pid {record.pid}) of an earlier launcher does not stop: "
                    f"kill it (kill -9 -{record.pid}) and start again"
                )
            stopped.append(record.name)
        path.unlink(missing_ok=True)
    return stopped


def _stop_leftover(record: Record) -> None:
    """Its stop signal and timeout, then SIGKILL; not our child, so watch it through /proc."""
    for signum, wait in ((record.stop_signal, record.stop_timeout), (signal.SIGKILL, KILL_WAIT_SECONDS)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signum)
        deadline = time.monotonic() + wait
        while record.is_running() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not record.is_running():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, signal.SIGKILL)  # what remains of its group
            return
