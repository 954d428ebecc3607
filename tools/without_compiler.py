"""Run a command with no C or C++ compiler (nor cmake, nor ninja) on PATH.

    python3 tools/without_compiler.py -- make setup
    python3 tools/without_compiler.py --show          # list what is hidden, run nothing

Why: set-up, the quickstart and the self-check of Labs 3.1.1-3.1.9 must work on a student's laptop
that has only Python and make. Uninstalling the compiler is not an option on a build machine, so
this builds a private folder of symlinks to every command on PATH except the compilers and their
build tools, makes that folder the whole PATH, sets CC and CXX to /bin/false (so a build that
ignores PATH fails too) and runs the command there. Stdlib only, so it runs before any venv exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# A compiler driver, bare (gcc), versioned (gcc-12), prefixed with a target triplet
# (x86_64-linux-gnu-gcc-12) or a standard (c89-gcc); and the build tools that drive them.
_COMPILER = re.compile(
    r"(?:[\w.]+-)*(?:cc|c89|c99|cpp|gcc|g\+\+|c\+\+|icc|icx|icpx|tcc|nvcc)(?:-[\w.+-]*)?"
    r"|(?:[\w.]+-)*clang.*|cmake.*|ccmake|ninja.*"
)
COMMANDS_TO_CHECK = ("cc", "c++", "gcc", "g++", "cpp", "clang", "clang++", "cmake", "ninja")


def is_hidden(name: str) -> bool:
    """True for a compiler or build-tool command name (`gcc-12`, `x86_64-linux-gnu-g++`, `clang++`, `cmake`)."""
    return _COMPILER.fullmatch(name) is not None


def _commands(path: str):
    """(name, full path) of every executable on `path`, first one wins, as the shell would find them."""
    seen = set()
    for folder in path.split(os.pathsep):
        if not folder or not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            full = os.path.join(os.path.abspath(folder), name)
            if name in seen or not (os.path.isfile(full) and os.access(full, os.X_OK)):
                continue
            seen.add(name)
            yield name, full


def compiler_free_path(bin_dir: Path, path: str | None = None) -> tuple[str, list[str]]:
    """Fill `bin_dir` with symlinks to the commands on `path` (default $PATH) that are not compilers.

    Returns the new PATH (just `bin_dir`) and the sorted names that were left out. A command whose
    symlink chain ends in a compiler (an alias under another name) is left out too.
    """
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    hidden = []
    for name, full in _commands(os.environ.get("PATH", "") if path is None else path):
        if is_hidden(name) or is_hidden(os.path.basename(os.path.realpath(full))):
            hidden.append(name)
        else:
            os.symlink(full, bin_dir / name)
    new_path = str(bin_dir)
    still_there = [c for c in COMMANDS_TO_CHECK if shutil.which(c, path=new_path)]
    if still_there:
        raise RuntimeError(f"compiler commands still found on the new PATH {new_path}: {', '.join(still_there)}")
    return new_path, sorted(hidden)


def environ_without_compiler(bin_dir: Path, env: dict | None = None) -> dict:
    """A copy of `env` (default os.environ) whose PATH has no compiler and whose CC and CXX are /bin/false."""
    env = dict(os.environ if env is None else env)
    env["PATH"], _ = compiler_free_path(bin_dir, env.get("PATH", ""))
    env["CC"] = env["CXX"] = "/bin/false"
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--show", action="store_true", help="print the commands that would be hidden, and exit")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with tempfile.TemporaryDirectory(prefix="without-compiler-") as tmp:
        os.chmod(tmp, 0o755)  # a grading kernel may run under another uid and still search this PATH
        if args.show:
            _, hidden = compiler_free_path(Path(tmp) / "bin")
            print("hidden from PATH:", " ".join(hidden) or "(nothing: no compiler on PATH)")
            return 0
        if not command:
            parser.error("no command given; usage: python3 tools/without_compiler.py -- make setup")
        env = environ_without_compiler(Path(tmp) / "bin")
        executable = shutil.which(command[0], path=env["PATH"]) if os.sep not in command[0] else command[0]
        if executable is None:
            print(f"without_compiler: {command[0]!r} is not on PATH once compilers are hidden", file=sys.stderr)
            return 127
        return subprocess.run([executable, *command[1:]], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
