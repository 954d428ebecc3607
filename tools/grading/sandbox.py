"""Run one submission's Jupyter kernel inside operating-system limits (used by tools.grading.engine).

nbgrader itself isolates nothing: the kernel that executes a student's notebook runs as the
grader, with the grader's files, network and process table. Here the kernel command is wrapped:

    setpriv --pdeathsig KILL            the kernel dies with the grading process, even on SIGKILL
    unshare --net --pid --mount --fork  no network (only its own loopback), its own process space
      [--user --map-root-user]          (every process it started dies with it), its own mounts; a
                                        user namespace too when the grader is not root
    python -m tools.grading.confine SPEC  builds the kernel a root of its own that ALLOWS only what it
                                        needs (system folders, the interpreter, the venv, the course's
                                        utils/ and tools/, the model cache: read-only; its job folders:
                                        read-write), pivots into it, drops to a fresh uid (or to no
                                        capability in the user namespace), sets resource limits, execs
                                        the kernel. No other file of the machine has a path in there:
                                        not this course's solutions/, not a second clone's, not another
                                        student's notebook, not the grader's home.

The kernel talks to the grader over Unix sockets (ZeroMQ `ipc` transport) in the job's ipc folder,
bound at the same path inside the kernel's root. What the machine does not allow is found once by
`probe()` (which starts the wrapper for real) and said loudly by `describe()`: without namespaces the
kernel can read every file the grader's user can. Resource limits (RLIMIT_AS/CPU/FSIZE/NPROC/CORE)
always apply. Output size is limited by the client (`SandboxExecute`), since a kernel's output travels
over ZeroMQ, where no rlimit reaches.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tools.headless import GRADING_CELL_TIMEOUT
from tools.paths import REPO

UID_BASE = 1_000_000  # sandbox uids: UID_BASE + pid * 64 + n, one per job, no passwd entry needed
_job_counter = itertools.count()


@dataclass(frozen=True)
class Limits:
    """What one submission may use. The defaults fit every lab under the grade profile."""

    cell_timeout: int = GRADING_CELL_TIMEOUT  # seconds per cell (nbgrader interrupts the cell, then goes on)
    memory_mb: int = 6144  # RLIMIT_AS of the kernel: beyond it allocations raise MemoryError
    output_bytes: int = 2_000_000  # per cell; beyond it output is dropped and the cell interrupted
    file_mb: int = 1024  # RLIMIT_FSIZE: largest file the kernel may write
    nproc: int = 512  # RLIMIT_NPROC for the sandbox uid (threads count as processes)
    cpu_seconds: int = 1800  # RLIMIT_CPU of the kernel: a last resort behind the cell timeout
    threads: int = 1  # OMP/MKL/torch threads per kernel


@functools.lru_cache(maxsize=None)
def probe() -> dict:
    """Which isolation this machine allows, tried once per process:
    {'root', 'namespaces' (unshare's flags, or []), 'pdeathsig', 'own_root' (the kernel's own root works), 'why'}."""
    root = os.geteuid() == 0
    unshare = shutil.which("unshare")
    flags = ["--net", "--pid", "--fork", "--kill-child", "--mount"] + ([] if root else ["--user", "--map-root-user"])
    namespaces = False
    if unshare:
        try:
            namespaces = subprocess.run([unshare, *flags, "true"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            namespaces = False
    setpriv = shutil.which("setpriv")
    pdeathsig = bool(setpriv) and subprocess.run([setpriv, "--pdeathsig", "KILL", "true"], capture_output=True).returncode == 0
    isolation = {"root": root, "namespaces": flags if namespaces else [], "pdeathsig": pdeathsig, "own_root": False,
                 "why": "" if namespaces else ("`unshare` is not installed" if not unshare else
                                               "`unshare " + " ".join(flags) + "` is not permitted here (no user namespaces?)")}
    if namespaces:
        isolation["own_root"], isolation["why"] = _try_own_root(isolation)
    return isolation


def _try_own_root(isolation: dict) -> tuple[bool, str]:
    """Start the wrapper for real, with a kernel that only imports the course: (works, why not)."""
    job_dir = Path(tempfile.mkdtemp(prefix="grader-probe-"))
    neighbour = Path(tempfile.mkdtemp(prefix="grader-probe-neighbour-"))  # a folder beside it the kernel must not see
    uid = new_uid() if isolation["root"] else None
    try:
        job_dir.chmod(0o711)
        neighbour.chmod(0o755)
        (job_dir / "work").mkdir()
        spec_path = _write_spec(job_dir, Limits(), [], {}, {**isolation, "own_root": True}, uid)
        # (the course itself may live in the same temporary folder, e.g. a student edition unpacked there: only the
        # neighbour is checked)
        check = "import os, utils, tools; assert not os.path.exists(%r)" % str(neighbour)
        done = subprocess.run([*_prefix(isolation), sys.executable, "-m", "tools.grading.confine", str(spec_path), "--",
                               sys.executable, "-c", check], cwd=job_dir / "work", capture_output=True, timeout=120)
        if done.returncode == 0:
            return True, ""
        log = (job_dir / "kernel.log").read_text(errors="replace").strip().splitlines() if (job_dir / "kernel.log").exists() else []
        return False, "the kernel's own root could not be built: " + (log[-1] if log else f"exit status {done.returncode}")
    except (OSError, subprocess.SubprocessError) as err:
        return False, f"the kernel's own root could not be built: {err}"
    finally:
        if uid is not None:
            kill_uid(uid)
        shutil.rmtree(job_dir, ignore_errors=True)
        shutil.rmtree(neighbour, ignore_errors=True)


def describe(isolation: dict) -> str:
    """One line for the first line of a class run and the summary: what the kernel ran under, and what it could read."""
    parts = ["resource limits"]
    if isolation["namespaces"]:
        parts.append("no network, own pid space")
    else:
        parts.append("NO network or pid namespace")
    if isolation.get("own_root"):
        parts.append("own root: only the system folders, the interpreter, the venv, the course's utils/ and tools/ and "
                     "the model cache (read-only) and its own job folder; no solutions/, submissions or home folder")
        parts.append("own uid per submission" if isolation["root"] else "the grader's uid without any capability")
    else:
        who = "that any user may read" if isolation["root"] else f"this user (uid {os.geteuid()}, the grader's) can read"
        parts.append(f"WARNING: the kernel can read every file {who} ({isolation.get('why') or 'no root of its own'}): any "
                     "solutions/ on this machine (hidden tests included), other students' notebooks, the grader's files")
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
    """nbgrader's Execute with the sandboxed kernel and a per-cell output budget (nbgrader imported lazily:
    this module is imported by code that needs no kernel)."""
    from jupyter_client.manager import AsyncKernelManager
    from nbformat.v4 import new_output
    from nbgrader.preprocessors import Execute
    from traitlets import Integer, List, Unicode

    class SandboxKernelManager(AsyncKernelManager):
        """Starts the kernel through tools.grading.confine, talking over Unix sockets."""

        sandbox_spec = Unicode("", config=True, help="JSON file written by prepare_spec()")
        sandbox_prefix = List([], config=True, help="setpriv/unshare words put before the wrapper")

        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            if not self.sandbox_spec:
                return cmd
            return [*self.sandbox_prefix, sys.executable, "-m", "tools.grading.confine", self.sandbox_spec, "--", *cmd]

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
                    f"\n[grader] OutputLimit: this cell printed more than {self.output_bytes} bytes; "
                    "the rest was dropped and the cell interrupted\n")))
                asyncio.ensure_future(self.km.interrupt_kernel())
            return None

    return SandboxExecute


def course_code(env: dict[str, str]) -> list[str]:
    """The course's installed code the kernel imports: `utils/` and `tools/` of this checkout and of wherever
    the venv's editable install points (another clone, maybe), the converter venv `.venv-gguf` beside them
    (Lab 3.1.10) or $COURSE_GGUF_VENV. Never the repository itself: its solutions/, labs/, tests/ stay out."""
    import importlib.util

    roots, paths = {REPO}, set()
    for name in ("utils", "tools"):
        spec = importlib.util.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            paths.add(os.path.realpath(location))
            roots.add(Path(location).resolve().parent)
    for root in roots:
        paths.update(str(root / name) for name in ("utils", "tools", ".venv-gguf") if (root / name).is_dir())
    gguf = env.get("COURSE_GGUF_VENV") or os.environ.get("COURSE_GGUF_VENV")
    if gguf and os.path.isdir(gguf):
        paths.add(os.path.realpath(gguf))
    return sorted(paths)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def kernel_view(job_dir: Path, env: dict[str, str], hide: list[str]) -> dict:
    """What the kernel's own root holds besides the system folders: read-only and writable paths (real paths,
    outermost only), symlinks by which the kernel names some of them, and `hide` folders that fall inside a
    read-only one (covered by an empty folder: `hide` is otherwise unneeded, nothing unlisted is there)."""
    named = [sys.base_prefix, sys.prefix, *course_code(env), *(v for k, v in env.items() if k == "COURSE_CACHE" and v and os.path.exists(v))]
    real = sorted({os.path.realpath(p) for p in named})
    read_only = [p for p in real if not any(_inside(p, q) for q in real if q != p)]
    links = {os.path.abspath(p): os.path.realpath(p) for p in named if os.path.abspath(p) != os.path.realpath(p)}
    mask = sorted({os.path.realpath(h) for h in hide if h and any(_inside(os.path.realpath(h), q) for q in read_only)})
    return {"read_only": read_only, "writable": [str(job_dir / n) for n in ("ipc", "home", "tmp")], "links": links, "mask": mask}


def _prefix(isolation: dict) -> list[str]:
    prefix = ["setpriv", "--pdeathsig", "KILL"] if isolation["pdeathsig"] else []
    return prefix + (["unshare", *isolation["namespaces"]] if isolation["namespaces"] else [])


def _write_spec(job_dir: Path, limits: Limits, hide: list[str], env: dict[str, str], isolation: dict, uid: int | None) -> Path:
    for name in ("ipc", "home", "tmp"):
        (job_dir / name).mkdir(mode=0o700, exist_ok=True)
    spec = {
        "limits": asdict(limits),
        "uid": uid,
        "own_network": bool(isolation["namespaces"]),  # a fresh network namespace: only its own loopback
        "own": [str(job_dir / n) for n in ("ipc", "home", "tmp")],
        "view": kernel_view(job_dir, env, hide) if isolation.get("own_root") else None,
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
    return spec_path


def prepare_spec(job_dir: Path, limits: Limits, hide: list[str], env: dict[str, str]) -> tuple[dict, Path, int | None]:
    """Write the wrapper's spec for one job; return (nbgrader config entries, spec path, uid).

    `hide`: folders the kernel must not see. With the kernel's own root nothing unlisted is visible anyway;
    a `hide` folder inside a read-only one is still covered. Without it (see describe()) nothing is hidden."""
    isolation = probe()
    uid = new_uid() if isolation["root"] else None
    spec_path = _write_spec(job_dir, limits, hide, env, isolation, uid)
    config = {
        "SandboxKernelManager.sandbox_spec": str(spec_path),
        "SandboxKernelManager.sandbox_prefix": _prefix(isolation),
        "SandboxKernelManager.transport": "ipc",
        "SandboxKernelManager.ip": str(job_dir / "ipc" / "kernel"),
        "SandboxKernelManager.connection_file": str(job_dir / "ipc" / "connection.json"),
        "SandboxExecute.output_bytes": limits.output_bytes,
    }
    return config, spec_path, uid
