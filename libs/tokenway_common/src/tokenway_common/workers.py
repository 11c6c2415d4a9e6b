"""Several server processes on one port (Linux SO_REUSEPORT), under a small supervisor.

With `processes` > 1 the process that was started becomes a supervisor. It reserves host:port (port 0:
one free port, the same for every worker), then starts that many workers, each a fresh interpreter
(`python -m <module> <the same flags> --port <port> --processes 1`: no fork of a process holding gRPC
or asyncio state) running the ordinary `serve()`. Every worker binds the same host:port with
SO_REUSEPORT, so the kernel spreads new connections over the workers that are listening; each serves
health for itself (NOT_SERVING while it starts or drains), so any connection lands on a live worker
that tells the truth about itself.

SIGTERM/SIGINT to the supervisor is forwarded to every worker, which drains as a single process does;
the supervisor exits once all have, 0 when every one exited cleanly. A worker that dies unexpectedly is
restarted after a backoff (0.5 s doubling to 30 s, back to 0.5 s once a worker ran a minute), unless
shutdown began; the replacement binds the port only once it is ready, so new connections keep going to
its siblings while it loads. A worker that fails before its first SERVING at startup stops the whole service (its
siblings would fail the same way). The supervisor's pid is the service's: SIGKILL to it takes its
workers with it at once (PR_SET_PDEATHSIG), as SIGKILL to a single process would, and they never
outlive it.

Only connections are spread, not calls: a client that keeps one HTTP/2 connection sends every call to
one worker. State kept in memory (rate limits, caches) is per worker.

Metrics (`metrics_port`): the supervisor serves them, the sum over its workers (metrics.WorkerMetrics:
prometheus_client's multiprocess mode, a private directory named in each worker's environment); the workers
serve none of their own (`--metrics-port 0`).
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, MutableMapping, Sequence

from . import config, logs, metrics

log = logging.getLogger("tokenway.workers")

#: processes = 0 means one per available core, at most this many.
MAX_AUTO = 8
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STABLE_SECONDS = 60.0  # a worker that ran this long before it died restarts after BACKOFF_FIRST again
#: Trailing metadata of every health Check a worker answers: "<index> pid=<pid>" (`grpcurl -v` shows it).
TAG_KEY = "tokenway-worker"

# What the supervisor hands each worker; read (and removed) once by `from_env` in the worker.
_ENV_INDEX = "TOKENWAY_WORKER_INDEX"
_ENV_READY_FD = "TOKENWAY_WORKER_READY_FD"
_ENV_SUPERVISOR = "TOKENWAY_WORKER_SUPERVISOR"
_ENV_BIND = "TOKENWAY_WORKER_BIND"  # "now" (at startup: liveness shows while it loads) or "ready"
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def cores() -> int:
    """Cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def count(processes: int) -> int:
    """How many server processes a `processes` setting means: 0 is one per core, at most MAX_AUTO."""
    return processes if processes > 0 else max(1, min(MAX_AUTO, cores()))


@dataclasses.dataclass(frozen=True)
class Worker:
    """This process is worker `index` (from 1) of the supervisor whose pid is `supervisor`."""

    index: int
    supervisor: int
    ready_fd: int
    bind_when_ready: bool = False  # it replaces a dead worker: its siblings serve meanwhile

    @property
    def tag(self) -> str:
        return f"{self.index} pid={os.getpid()}"

    def attach(self) -> bool:
        """Dies with the supervisor from now on, however it goes; False if it is already gone."""
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        return os.getppid() == self.supervisor  # it may have died before prctl: then no signal comes

    def notify_ready(self) -> None:
        """Tells the supervisor this worker is SERVING (once)."""
        try:
            os.write(self.ready_fd, b"R")
            os.close(self.ready_fd)
        except OSError:
            pass  # the supervisor is gone; the death signal does the rest

    def tag_logs(self) -> None:
        """Every log line of this process carries `worker=<index>` (a field: text and json alike)."""
        for handler in logging.getLogger().handlers:
            handler.addFilter(_WorkerField(self.index))


class _WorkerField(logging.Filter):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None)
        record.fields = {**fields, "worker": self.index} if fields else {"worker": self.index}
        return True


def from_env(environ: MutableMapping[str, str] | None = None) -> Worker | None:
    """The Worker this process is, if a supervisor started it. The variables are removed, so that
    nothing this process starts mistakes itself for a worker."""
    environ = os.environ if environ is None else environ
    values = [environ.pop(k, None) for k in (_ENV_INDEX, _ENV_SUPERVISOR, _ENV_READY_FD)]
    bind = environ.pop(_ENV_BIND, "now")
    if None in values:
        return None
    index, supervisor, ready_fd = map(int, values)  # type: ignore[arg-type]
    return Worker(index, supervisor, ready_fd, bind_when_ready=bind == "ready")


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: a free one) that the workers can share but nobody else can take.

    First a plain bind (no SO_REUSEPORT) fails if anything already listens there, even a group of
    SO_REUSEPORT sockets (so two services cannot silently share a port); then the port is held with
    SO_REUSEPORT by a socket that never listens (it gets no connections) until the supervisor exits, so
    that it stays ours while workers restart. Raises OSError.
    """
    family, _, _, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does: TIME_WAIT is no conflict
        probe.bind(address)
        address = (address[0], probe.getsockname()[1], *address[2:])
    held = socket.socket(family, socket.SOCK_STREAM)
    try:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(address)
    except OSError:
        held.close()
        raise
    return held


@dataclasses.dataclass
class _Slot:
    index: int
    proc: asyncio.subprocess.Process | None = None
    lives: int = 0  # processes started for this slot
    ever_ready: bool = False  # some process of this slot reached SERVING
    ready_now: bool = False  # the current one did
    ready_fd: int | None = None  # read end of the current one's ready pipe, until it said something
    code: int = 0  # how its last process ended once shutdown began (0: cleanly)


class Supervisor:
    def __init__(self, name: str, module: str, argv: Sequence[str], processes: int, host: str, port: int,
                 environ: Mapping[str, str] | None = None, worker_metrics: metrics.WorkerMetrics | None = None) -> None:
        self.name, self.module, self.argv, self.host, self.port = name, module, list(argv), host, port
        self.environ = dict(os.environ if environ is None else environ)
        self.metrics = worker_metrics
        if worker_metrics is not None:
            self.environ.update(worker_metrics.environ)
        self.slots = [_Slot(i + 1) for i in range(processes)]
        self.stopping = asyncio.Event()
        self.all_ready = False

    def command(self) -> list[str]:
        # argparse keeps the last of a repeated flag: these two win over the user's own.
        return [sys.executable, "-m", self.module, *self.argv, "--port", str(self.port), "--processes", "1",
                "--metrics-port", "0"]

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, self.stop, sig)
        try:
            if self.metrics is not None:  # bound before any worker starts: a taken port stops the start
                try:
                    await self.metrics.endpoint.start()
                except OSError as e:
                    log.error("%s", e)
                    return 1
                log.info("%s: metrics of its %d worker processes on http://%s:%d/metrics", self.name,
                         len(self.slots), self.metrics.endpoint.host, self.metrics.endpoint.port)
            await asyncio.gather(*(self._keep(slot) for slot in self.slots))
        finally:
            if self.metrics is not None:
                await self.metrics.close()
        failed = [s for s in self.slots if s.code != 0]
        for s in failed:
            log.error("%s worker %d ended with code %d", self.name, s.index, s.code)
        log.info("%s stopped (%d worker processes)", self.name, len(self.slots))
        return 1 if failed else 0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Begins shutdown (once) and forwards `sig` to every live worker."""
        if not self.stopping.is_set():
            log.info("%s: %s: stopping %d worker processes", self.name, signal.Signals(sig).name, len(self.slots))
            self.stopping.set()
        for slot in self.slots:
            self._signal(slot, sig)

    @staticmethod
    def _signal(slot: _Slot, sig: int) -> None:
        if slot.proc is not None and slot.proc.returncode is None:
            try:
                slot.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    async def _keep(self, slot: _Slot) -> None:
        """Runs slot's worker until shutdown, restarting it after a backoff when it dies."""
        loop = asyncio.get_running_loop()
        quick_deaths = 0
        while not self.stopping.is_set():
            started = loop.time()
            code = await self._run_once(slot)
            if self.stopping.is_set():
                # A worker stopped by the signal we forwarded before it could catch it ended cleanly too.
                slot.code = 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
                return
            if not slot.ever_ready:
                log.error("%s worker %d exited with code %d before it was SERVING; stopping the service",
                          self.name, slot.index, code)
                slot.code = code or 1
                self.stop(signal.SIGTERM)
                return
            quick_deaths = 1 if loop.time() - started >= STABLE_SECONDS else quick_deaths + 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (quick_deaths - 1))
            log.warning("%s worker %d exited unexpectedly (%s); restarting it in %.1fs", self.name, slot.index,
                        _describe(code), delay)
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
            except TimeoutError:
                pass

    async def _run_once(self, slot: _Slot) -> int:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        # Once the service has served, a replacement binds only when ready: connections keep going to
        # its siblings meanwhile, never to a worker still loading.
        env = dict(self.environ, **{_ENV_INDEX: str(slot.index), _ENV_SUPERVISOR: str(os.getpid()),
                                    _ENV_READY_FD: str(write_fd), _ENV_BIND: "ready" if self.all_ready else "now"})
        try:
            proc = await asyncio.create_subprocess_exec(*self.command(), env=env, pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        slot.proc, slot.ready_now, slot.ready_fd = proc, False, read_fd
        slot.lives += 1
        if self.stopping.is_set():  # shutdown began while it was being started: it missed the signal
            self._signal(slot, signal.SIGTERM)
        log.info("%s worker %d started: pid %d", self.name, slot.index, proc.pid)
        loop.add_reader(read_fd, self._on_ready_pipe, slot)
        try:
            return await proc.wait()
        finally:
            self._close_pipe(slot)
            if self.metrics is not None and proc.returncode is not None:
                self.metrics.worker_exited(proc.pid)

    def _on_ready_pipe(self, slot: _Slot) -> None:
        data = os.read(slot.ready_fd, 16) if slot.ready_fd is not None else b""
        self._close_pipe(slot)  # one byte or end of file: either way nothing more comes
        if not data or slot.proc is None:
            return
        pid = slot.proc.pid
        slot.ready_now = slot.ever_ready = True
        if self.all_ready:
            log.info("%s worker %d SERVING again: pid %d", self.name, slot.index, pid)
        elif all(s.ready_now for s in self.slots):
            self.all_ready = True
            print(f"{self.name} SERVING on {self.host}:{self.port} ({len(self.slots)} worker processes)", flush=True)
            log.info("%s SERVING on %s:%d with %d worker processes: pids %s", self.name, self.host, self.port,
                     len(self.slots), " ".join(str(s.proc.pid) for s in self.slots if s.proc is not None))

    @staticmethod
    def _close_pipe(slot: _Slot) -> None:
        if slot.ready_fd is not None:
            fd, slot.ready_fd = slot.ready_fd, None
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"code {code}"


def supervise(settings: config.ServerSettings, name: str, module: str, processes: int, argv: Sequence[str]) -> int:
    """Runs `processes` workers of `python -m module` on settings' host:port until SIGTERM/SIGINT; the exit code."""
    logs.setup(name, settings.log_level, settings.log_format)
    if not sys.platform.startswith("linux"):
        log.error("%s: processes=%d needs Linux (SO_REUSEPORT spreads connections only there); use 1", name, processes)
        return 2
    try:
        held = reserve_port(settings.host, settings.port)
    except OSError as e:
        log.error("cannot bind %s:%d: %s", settings.host, settings.port, e)
        return 1
    with held:
        port = held.getsockname()[1]
        log.info("starting %s: %d worker processes on %s:%d (SO_REUSEPORT)", name, processes, settings.host, port,
                 extra={"fields": config.redacted(settings)})
        worker_metrics = metrics.WorkerMetrics(settings.host, settings.metrics_port) if settings.metrics_port else None
        return asyncio.run(Supervisor(name, module, argv, processes, settings.host, port,
                                      worker_metrics=worker_metrics).run())
