"""CPU seconds per process from /proc, over a measured window, and optional py-spy sampling.

A server is a set of root processes, each with a label (orchestrator, tokenizer, inference, envoy, vllm,
transformers-serve, client). Every descendant is found at each reading and labelled `root/comm`
(vLLM's `VLLM::EngineCore`, Envoy's binary under its launcher, worker processes). A process's reading is
utime + stime + cutime + cstime: the CPU of a child that exits and is reaped during the window moves into
its parent's cutime, so the sum over a root's tree stays right even when its processes come and go. The
load generator ("client", this process) counts itself only: the servers it starts itself are its children.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

CLK = os.sysconf("SC_CLK_TCK")

# Benchmarks start many servers side by side (and beside a running suite): none serves the fixed default
# metrics ports (9091-9093). Every bench script imports this module; the servers inherit the environment.
for _service in ("ORCHESTRATOR", "TOKENIZER", "INFERENCE"):
    os.environ[f"TOKENWAY_{_service}_METRICS_PORT"] = "0"


def host() -> tuple[str, float | None]:
    """This machine's CPU model and RAM in GiB, from /proc ("" and None where unreadable)."""
    cpu_model = ""
    try:
        cpu_model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = None
    try:
        mem_gib = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    return cpu_model, mem_gib


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            fields = _stat(int(d.name))
            if fields is not None:
                kids.setdefault(int(fields[1]), []).append(int(d.name))
    return kids


def tree(roots: dict[str, int], alone: tuple[str, ...] = ()) -> dict[str, int]:
    """{label: pid} for each root and each of its descendants (not for the roots in `alone`, nor below another
    root: the bench's own process starts some servers itself, and they are not the client's)."""
    kids, out = _children(), {}
    root_pids = set(roots.values())
    for label, pid in roots.items():
        if label in alone:
            out[label] = pid
            continue
        todo = [(label, pid)]
        while todo:
            name, p = todo.pop()
            out[name] = p
            for k in kids.get(p, ()):
                if k in root_pids:
                    continue
                try:
                    comm = Path(f"/proc/{k}/comm").read_text().strip()
                except OSError:
                    continue
                child = f"{label}/{comm}"
                if child in out or any(child == n for n, _ in todo):
                    child = f"{child}.{k}"
                todo.append((child, k))
    return out


def cpu_seconds(pids: dict[str, int], alone: tuple[str, ...] = ()) -> dict[str, float]:
    """utime + stime + cutime + cstime of each process; utime + stime only for the labels in `alone`."""
    out = {}
    for label, pid in pids.items():
        f = _stat(pid)
        if f is not None:
            out[label] = sum(int(x) for x in f[11:13 if label in alone else 15]) / CLK
    return out


class CpuWindow:
    """`start()` and `stop()` around a window; `used` is then {label: CPU s} per process, `groups` per root.
    The roots in `alone` count their own process only (the load generator: its children are servers)."""

    def __init__(self, roots: dict[str, int], alone: tuple[str, ...] = ("client",)) -> None:
        self.roots = roots
        self.alone = alone
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        return cpu_seconds(tree(self.roots, self.alone), self.alone)

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> None:
        after = self._read()
        labels = set(after) | set(self.before)
        self.used = {k: round(after.get(k, 0.0) - self.before.get(k, 0.0), 3) for k in sorted(labels)}

    @property
    def groups(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for label, v in self.used.items():
            root = label.split("/", 1)[0]
            out[root] = round(out.get(root, 0.0) + v, 3)
        return out


class PySpy:
    """py-spy record (raw, 50 Hz) on each Python process of a server while a level runs."""

    def __init__(self, out_dir: Path, prefix: str, roots: dict[str, int]) -> None:
        self.out_dir, self.prefix, self.roots = out_dir, prefix, roots
        self.procs: list[tuple[str, Path, subprocess.Popen]] = []

    def start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for label, pid in tree(self.roots, ("client",)).items():
            if label == "client" or "envoy" in label:
                continue
            out = self.out_dir / f"{self.prefix}-{label.replace('/', '_').replace(':', '_')}.raw"
            self.procs.append((label, out, subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking", "-r", "50", "-f", "raw", "-o", str(out), "-p", str(pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))

    def stop(self) -> dict[str, list[str]]:
        tops = {}
        for label, out, p in self.procs:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
            if out.exists():
                tops[label] = top_functions(out)
        return tops


def top_functions(raw: Path, n: int = 5) -> list[str]:
    """The n functions with the most samples on top of the stack (self time), as 'share% function'."""
    leaf: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frame = stack.split(";")[-1]
        leaf[frame] = leaf.get(frame, 0) + int(count)
        total += int(count)
    return [f"{100 * c / total:5.1f}% {f}" for f, c in sorted(leaf.items(), key=lambda kv: -kv[1])[:n]] if total else []
