"""The kernel side of the grading sandbox: give the kernel a root of its own, drop privileges, exec it.

    python -m tools.grading.confine SPEC.json -- KERNEL ARGV...

tools.grading.sandbox starts this under `unshare` (a fresh mount, pid and network namespace; with a
user namespace when the grader is not root), so it runs as root of its own namespaces. It then:

1. builds a new root on a tmpfs that holds only what the spec allows, each at the path it has on the
   machine: the system folders (/usr, /bin, /sbin, /lib*, /etc; read-only), a fresh /proc of its own pid
   space, a minimal /dev, /sys read-only, an empty /tmp and /dev/shm, the interpreter, the venv, the
   course's installed code and the model cache (read-only), and the job's own folders (read-write: the
   kernel's working directory, ipc, home, tmp). Every other file of the machine (any clone's
   `solutions/`, other students' notebooks, the grader's home) has no path in that root;
2. pivots into it (chroot where pivot_root is unknown) and detaches the old root;
3. drops to the job's fresh uid (root grader), or keeps uid 0 of the user namespace with every
   capability dropped (non-root grader); sets no_new_privs and the resource limits; execs the kernel.

Standard library only: it starts for every kernel, and must not import what the kernel cannot see.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import re
import resource
import signal
import sys
from pathlib import Path

SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
SCRATCH = "size=256m,mode=1777"  # /tmp and /dev/shm: libraries that ignore TMPDIR; RAM-backed, so capped

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
# statvfs flag -> mount flag: a read-only remount in a user namespace must keep these as they are
KEEP_FLAGS = {2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 1024: 1024, 2048: 2048, 4096: 1 << 21}
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}  # syscall numbers
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 24, 28, 38, 47
SECUREBITS_LOCKED_NOROOT = 0xEF  # noroot, no_setuid_fixup, no_cap_ambient_raise, each locked; keep_caps locked off

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {source or fstype} on {target}")


def _mounts_under(target: str) -> list[str]:
    """Mount points at or below `target`, in mount order (parents first)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point == target or point.startswith(target.rstrip("/") + "/"):
            found.append(point)
    return found


def _bind(source: str, target: str, writable: bool = False) -> None:
    """Bind `source` (with its submounts) at `target`; read-only unless `writable`, submounts included."""
    _mount(source, target, None, MS_BIND | MS_REC)
    if writable:
        return
    for point in _mounts_under(target):
        flags = os.statvfs(point).f_flag
        keep = sum(ms for st, ms in KEEP_FLAGS.items() if flags & st)
        _mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep)


def _mountpoint(base: str, path: str, like: str) -> str:
    """An empty directory (or file, if `like` is one) at `path` inside the new root, parents 0755."""
    target = base + path
    if os.path.isdir(like):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if not os.path.exists(target):
            open(target, "w").close()
    return target


def build_root(base: str, view: dict) -> None:
    """Mount at `base` a root holding only the system folders and `view`'s paths (see the module docstring)."""
    umask = os.umask(0o022)
    try:
        _build(base, view)
    finally:
        os.umask(umask)


def _build(base: str, view: dict) -> None:
    os.makedirs(base, mode=0o700, exist_ok=True)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here leaks back to the machine
    _mount("grade-root", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    for path in SYSTEM:
        if os.path.islink(path):
            os.symlink(os.readlink(path), base + path)  # /bin -> usr/bin on merged-/usr systems
        elif os.path.isdir(path):
            _bind(path, _mountpoint(base, path, path))
    _mount("proc", _mountpoint(base, "/proc", "/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if os.path.isdir("/sys"):  # torch reads the CPU topology there
        _bind("/sys", _mountpoint(base, "/sys", "/sys"))
    dev = _mountpoint(base, "/dev", "/dev")
    _mount("grade-dev", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            _bind(f"/dev/{name}", _mountpoint(base, f"/dev/{name}", f"/dev/{name}"), writable=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/shm")
    _mount("grade-shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, SCRATCH)
    _mount(None, dev, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    _mount("grade-tmp", _mountpoint(base, "/tmp", "/tmp"), "tmpfs", MS_NOSUID | MS_NODEV, SCRATCH)
    binds = [(p, False) for p in view["read_only"]] + [(p, True) for p in view["writable"]]
    for path, writable in sorted(binds, key=lambda b: b[0].rstrip("/").count("/")):  # parents before children
        _bind(path, _mountpoint(base, path, path), writable)
    for link, target in view.get("links", {}).items():  # a venv or interpreter reached through a symlink
        if not os.path.lexists(base + link):
            os.makedirs(os.path.dirname(base + link), mode=0o755, exist_ok=True)
            os.symlink(target, base + link)
    for path in view.get("mask", []):  # a folder that must stay hidden although it lies inside a bound one
        if os.path.isdir(base + path):
            _mount("grade-hidden", base + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=4k")
    _mount(None, base, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def enter_root(base: str, cwd: str) -> None:
    """Make `base` the root and detach the old one (pivot_root), or chroot where its syscall number is unknown."""
    os.chdir(base)
    number = PIVOT_ROOT.get(platform.machine())
    if number is not None and _libc.syscall(number, b".", b".") == 0:
        _check(_libc.umount2(b".", MNT_DETACH), "detach the old root")  # the old root was stacked on `.`
    else:
        os.chroot(".")
    os.chdir("/")
    os.chdir(cwd)


def drop_privileges(uid: int | None, nproc: int) -> None:
    """Become the job's uid (root grader), or stay uid 0 of the user namespace holding no capability at all."""
    if os.geteuid() == 0:  # of the machine or of the user namespace: nothing may raise a capability again
        cap = 0
        while _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
            cap += 1
        _libc.prctl(PR_CAP_AMBIENT, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    if uid is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    elif os.geteuid() == 0:
        _check(_libc.prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED_NOROOT, 0, 0, 0), "securebits")  # uid 0 gains nothing at exec
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")  # no setuid program raises it again
    # Changing uid clears the parent-death signal `unshare --kill-child` set: set it again, so the
    # kernel dies with unshare (which dies with the grading process, via setpriv).
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


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


def main(spec_path: str, argv: list[str]) -> None:
    spec = json.loads(Path(spec_path).read_text())
    limits, uid, job = spec["limits"], spec["uid"], Path(spec_path).parent
    if spec.get("own_network"):
        try:
            _loopback_up()
        except OSError:
            pass  # without it, only a lab's own loopback server fails; the isolation is the same
    cwd = os.getcwd()
    log = os.open(job / "kernel.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)  # the kernel's own console chatter, not the grader's terminal (cells' output goes over ZeroMQ)
    os.dup2(log, 2)  # and why this wrapper failed, if it does
    os.close(log)
    if uid is not None:
        # The kernel's working directory becomes the uid's; the notebook nbgrader put there stays root's and unreadable.
        for entry in os.scandir(cwd):
            if entry.is_file(follow_symlinks=False) and entry.name.endswith(".ipynb"):
                os.chmod(entry.path, 0o600)
        os.chown(cwd, uid, uid)
        os.chmod(cwd, 0o700)
        for path in spec["own"]:
            os.chown(path, uid, uid)
        if "-f" in argv:
            os.chown(argv[argv.index("-f") + 1], uid, uid)  # the connection file
    view = spec.get("view")
    if view:
        if not os.path.realpath(cwd).startswith(os.path.realpath(job) + os.sep):
            sys.exit(f"grading sandbox: the kernel's working directory {cwd} is not inside its job folder {job}; refusing to expose it")
        build_root(str(job / "root"), {**view, "writable": [*view["writable"], cwd]})
        enter_root(str(job / "root"), cwd)
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mb, limits["memory_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_mb"] * mb, limits["file_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    drop_privileges(uid, limits["nproc"])
    env = {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"}  # its pid means nothing in a new pid space
    env.update(spec["env"])
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        sys.exit("usage: python -m tools.grading.confine SPEC.json -- KERNEL ARGV...")
    main(args[0], args[2:])
