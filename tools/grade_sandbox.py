"""Run one submission's Jupyter kernel inside operating-system limits (used by tools.grade_class).

nbgrader itself isolates nothing: the kernel that executes a student's notebook runs as the
grader, with the grader's files, network and process table. Here the kernel command is wrapped:

    setpriv --pdeathsig KILL            the kernel dies with the grading process, even on SIGKILL
    unshare --net --pid --mount --fork  no network (only its own loopback), its own process space
                                        (every process it started dies with it), its own mounts
    python -m tools.grade_sandbox SPEC  as root inside those namespaces: hide paths under empty
                                        read-only tmpfs (the solutions, the class's submissions,
                                        the output folder), hand the working directory to a
                                        fresh uid, set resource limits, drop to that uid, exec
                                        the kernel.

The kernel talks to the grader over Unix sockets (ZeroMQ `ipc` transport), which cross the
network namespace. What the machine does not allow is skipped and reported by `probe()`:
without root there is no uid switch and no mounts; without `unshare` no namespaces. Resource
limits (RLIMIT_AS/CPU/FSIZE/NPROC/CORE) always apply. Output size is limited by the client
(`SandboxExecute`), since a kernel's output travels over ZeroMQ, where no rlimit reaches.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

UID_BASE = 1_000_000  # sandbox uids: UID_BASE + pid * 64 + n, one per job, no passwd entry needed
_job_counter = itertools.count()


@dataclass(frozen=True)
class Limits:
    """What one submission may use. The defaults fit every lab under the grade profile."""

    cell_timeout: int = 300  # seconds per cell (nbgrader interrupts the cell, then goes on)
    memory_mb: int = 6144  # RLIMIT_AS of the kernel: beyond it allocations raise MemoryError
    output_bytes: int = 2_000_000  # per cell; beyond it output is dropped and the cell interrupted
    file_mb: int = 1024  # RLIMIT_FSIZE: largest file the kernel may write
    nproc: int = 512  # RLIMIT_NPROC for the sandbox uid (threads count as processes)
    cpu_seconds: int = 1800  # RLIMIT_CPU of the kernel: a last resort behind the cell timeout
    threads: int = 1  # OMP/MKL/torch threads per kernel


@functools.lru_cache(maxsize=None)
def probe() -> dict:
    """Which isolation this machine allows, tried once: {'root', 'namespaces', 'pdeathsig'}."""
    root = os.geteuid() == 0
    unshare = shutil.which("unshare")
    flags = ["--net", "--pid", "--fork", "--kill-child"] + (["--mount"] if root else ["--user", "--map-root-user"])
    namespaces = False
    if unshare:
        try:
            namespaces = subprocess.run([unshare, *flags, "true"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            namespaces = False
    setpriv = shutil.which("setpriv")
    pdeathsig = bool(setpriv) and subprocess.run([setpriv, "--pdeathsig", "KILL", "true"], capture_output=True).returncode == 0
    return {
        "root": root,
        "namespaces": flags if namespaces else [],
        "pdeathsig": pdeathsig,
    }


def describe(isolation: dict) -> str:
    """One line for the summary: what the kernel ran under."""
    parts = ["resource limits"]
    if isolation["namespaces"]:
        parts.append("no network, own pid space" + (", own mounts (solutions and class folders hidden)" if isolation["root"] else ""))
    else:
        parts.append("NO network or pid namespace (unshare not permitted here)")
    parts.append("own uid per submission" if isolation["root"] else "SAME uid as the grader (not root)")
    return "; ".join(parts)


def new_uid() -> int:
    return UID_BASE + (os.getpid() % 4_000_000) * 64 + next(_job_counter) % 64


def kill_uid(uid: int) -> int:
    """SIGKILL every process left running under a sandbox uid (only ours: uids are per job)."""
    killed = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if proc.stat().st_uid == uid:
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):
            continue
    return killed


# --- the grading side: kernel manager and executor ------------------------------------------


@functools.lru_cache(maxsize=None)
def execute_class():
    """nbgrader's Execute with the sandboxed kernel and a per-cell output budget (imported lazily:
    the wrapper below must start fast, with the standard library only)."""
    from jupyter_client.manager import AsyncKernelManager
    from nbformat.v4 import new_output
    from nbgrader.preprocessors import Execute
    from traitlets import Integer, List, Unicode

    class SandboxKernelManager(AsyncKernelManager):
        """Starts the kernel through the wrapper below, talking over Unix sockets."""

        sandbox_spec = Unicode("", config=True, help="JSON file written by prepare_spec()")
        sandbox_prefix = List([], config=True, help="setpriv/unshare words put before the wrapper")

        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            if not self.sandbox_spec:
                return cmd
            return [*self.sandbox_prefix, sys.executable, "-m", "tools.grade_sandbox", self.sandbox_spec, "--", *cmd]

    class SandboxExecute(Execute):
        output_bytes = Integer(2_000_000, config=True)

        def __init__(self, *args, **kwargs):
            kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
            super().__init__(*args, **kwargs)
            self._printed: dict[int, int] = {}

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            size = len(content["text"]) if "text" in content else len(json.dumps(content.get("data", content)))
            used = self._printed.get(cell_index, 0) + size
            self._printed[cell_index] = used
            if used <= self.output_bytes:
                return super().output(outs, msg, display_id, cell_index)
            if used - size <= self.output_bytes:  # first message over the budget: say so, stop the cell
                outs.append(new_output("stream", name="stderr", text=(
                    f"\n[grade-class] OutputLimit: this cell printed more than {self.output_bytes} bytes; "
                    "the rest was dropped and the cell interrupted\n")))
                asyncio.ensure_future(self.km.interrupt_kernel())
            return None

    return SandboxExecute


def prepare_spec(job_dir: Path, limits: Limits, hide: list[str], env: dict[str, str]) -> tuple[dict, Path, int | None]:
    """Write the wrapper's spec for one job; return (nbgrader config entries, spec path, uid)."""
    isolation = probe()
    uid = new_uid() if isolation["root"] else None
    for name in ("ipc", "home", "tmp"):
        (job_dir / name).mkdir(mode=0o700, exist_ok=True)
    spec = {
        "limits": asdict(limits),
        "uid": uid,
        "hide": [p for p in hide if p] if isolation["root"] and isolation["namespaces"] else [],
        "own_network": bool(isolation["namespaces"]),  # a fresh network namespace: only its own loopback
        "own": [str(job_dir / n) for n in ("ipc", "home", "tmp")],
        # what the kernel must reach: the interpreter, the venv, the course, the model, its own dirs
        "expose": sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), str(Path(__file__).resolve().parent.parent),
                          *(v for k, v in env.items() if k == "COURSE_CACHE"), str(job_dir / "ipc")}),
        "env": {
            **env,
            "HOME": str(job_dir / "home"),
            "TMPDIR": str(job_dir / "tmp"),
            "MPLCONFIGDIR": str(job_dir / "home" / ".matplotlib"),
            "HF_HOME": str(job_dir / "home" / "hf"),
            "OMP_NUM_THREADS": str(limits.threads),
            "MKL_NUM_THREADS": str(limits.threads),
            "OPENBLAS_NUM_THREADS": str(limits.threads),
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        },
    }
    spec_path = job_dir / "sandbox.json"
    spec_path.write_text(json.dumps(spec))
    prefix = []
    if isolation["pdeathsig"]:
        prefix += ["setpriv", "--pdeathsig", "KILL"]
    if isolation["namespaces"]:
        prefix += ["unshare", *isolation["namespaces"]]
    config = {
        "SandboxKernelManager.sandbox_spec": str(spec_path),
        "SandboxKernelManager.sandbox_prefix": prefix,
        "SandboxKernelManager.transport": "ipc",
        "SandboxKernelManager.ip": str(job_dir / "ipc" / "kernel"),
        "SandboxKernelManager.connection_file": str(job_dir / "ipc" / "connection.json"),
        "SandboxExecute.output_bytes": limits.output_bytes,
    }
    return config, spec_path, uid


# --- the kernel side: runs as root inside the namespaces, then becomes the kernel -----------


def _mount_empty(path: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=4k,mode=0755", "grade-sandbox", path], check=True, capture_output=True)


def _expose(paths: list[str], stash_root: Path) -> None:
    """Let the sandbox uid reach `paths` (the interpreter, the venv, the course) when an ancestor is
    closed to others (e.g. /root, 0700, holding pyenv): inside this mount namespace only, the closed
    ancestor is covered by an empty tmpfs into which just the needed child is bound back. Everything
    else in it (the grader's home: keys, tokens, caches) disappears from the kernel's view."""
    for _ in range(8):  # each pass opens the shallowest closed ancestor of each path
        wanted: dict[Path, set[str]] = {}
        for path in paths:
            parts = Path(path).parts
            for i in range(1, len(parts)):
                ancestor = Path(*parts[:i])
                if not ancestor.stat().st_mode & 0o001:
                    wanted.setdefault(ancestor, set()).add(parts[i])
                    break
        if not wanted:
            return
        for ancestor, children in wanted.items():
            stashed = []
            for child in sorted(children):
                stash = stash_root / f"stash-{len(list(stash_root.iterdir()))}"
                source = ancestor / child
                stash.mkdir() if source.is_dir() else stash.touch()
                subprocess.run(["mount", "--bind", str(source), str(stash)], check=True, capture_output=True)
                stashed.append((child, stash, source.is_dir()))
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0711,size=64k", "grade-sandbox", str(ancestor)], check=True, capture_output=True)
            for child, stash, is_dir in stashed:
                target = ancestor / child
                target.mkdir() if is_dir else target.touch()
                subprocess.run(["mount", "--bind", str(stash), str(target)], check=True, capture_output=True)


def _loopback_up() -> None:
    """Bring up the loopback of the kernel's fresh network namespace (it starts down), so a lab may run a
    server on 127.0.0.1 for itself (Lab 3.1.10 serves its model to llama.cpp's server). The namespace has no
    other interface: the grader's loopback and every other host stay out of reach."""
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, siocgifflags, struct.pack("16sH14x", b"lo", 0)))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def _wrap(spec_path: str, argv: list[str]) -> None:
    spec = json.loads(Path(spec_path).read_text())
    limits = Limits(**spec["limits"])
    uid = spec["uid"]
    if spec.get("own_network"):
        try:
            _loopback_up()
        except OSError:
            pass  # without it, only a lab's own loopback server fails; the isolation is the same
    for path in spec["hide"]:
        if os.path.isdir(path):
            _mount_empty(path)
    if uid is not None and spec["hide"]:  # root inside a mount namespace
        stash_root = Path(spec_path).parent / "stash"
        stash_root.mkdir(mode=0o700, exist_ok=True)
        _expose(spec["expose"], stash_root)
    cwd = os.getcwd()
    log = os.open(Path(spec_path).parent / "kernel.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)  # the kernel's own console chatter, not the grader's terminal (cells' output goes over ZeroMQ)
    os.dup2(log, 2)
    os.close(log)
    if uid is not None:
        # The kernel's working directory becomes the uid's; the notebook nbgrader put there
        # (test cells with hidden tests restored) stays root's and unreadable.
        for entry in os.scandir(cwd):
            if entry.is_file(follow_symlinks=False) and entry.name.endswith(".ipynb"):
                os.chmod(entry.path, 0o600)
        os.chown(cwd, uid, uid)
        os.chmod(cwd, 0o700)
        for path in spec["own"]:
            os.chown(path, uid, uid)
        connection = argv[argv.index("-f") + 1] if "-f" in argv else None
        if connection:
            os.chown(connection, uid, uid)
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if uid is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.nproc, limits.nproc))
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        # Changing uid clears the parent-death signal `unshare --kill-child` set: set it again, so
        # the kernel dies with unshare (which dies with the grading process, via setpriv).
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    env = {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"}  # its pid means nothing in a new pid space
    env.update(spec["env"])
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        sys.exit("usage: python -m tools.grade_sandbox SPEC.json -- KERNEL ARGV...")
    _wrap(args[0], args[2:])
