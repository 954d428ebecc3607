"""The grading sandbox ALLOWS what the kernel needs and nothing else (tools.grading.sandbox, tools.grading.confine).

A second copy of a course, with its `solutions/`, and another student's notebook are planted in a
world-readable folder of /tmp; the repository whose venv grades (this one) has its own `solutions/` too.
A submission of a tiny course (graded with this venv, so "installed from another folder") tries to
read them all, lists the machine's folders and globs for notebooks. None of the secrets may reach the
autograded notebook, while the kernel still imports `utils`, reads the model cache it was handed, and
writes in its working directory and HOME.

The wrapper tests start the wrapper with a small script instead of a kernel (no model, no nbgrader);
the grading test starts one real kernel through tools.grading.engine (no model: about 10 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tools.grading.course import Course
from tools.grading.engine import grade_notebook, template
from tools.grading.sandbox import Limits, _prefix, describe, kernel_view, kill_uid, prepare_spec, probe
from tools.paths import REPO

TINY = "lab-0.0.1-tiny"
REPO_SOLUTION = REPO / "solutions" / "lab-3.1.6-dataset-preparation.ipynb"  # has hidden tests


def own_root_or_skip() -> dict:
    isolation = probe()
    if not isolation["own_root"]:
        pytest.skip(f"this machine gives the kernel no root of its own: {describe(isolation)}")
    return isolation


@pytest.fixture
def planted():
    """A world-readable folder in /tmp (not pytest's private one, which would hide it by accident) holding another
    clone's solutions/, another student's notebook and a model cache; each secret is a fresh random string."""
    top = Path(tempfile.mkdtemp(prefix="sandbox-plant-"))
    secrets = {"solution": f"SECRET-SOLUTION-{uuid.uuid4().hex}", "student": f"SECRET-STUDENT-{uuid.uuid4().hex}"}
    files = {
        "solution": top / "other-clone" / "solutions" / f"{TINY}.ipynb",
        "student": top / "class" / "other-student" / TINY / f"{TINY}.ipynb",
    }
    for name, path in files.items():
        path.parent.mkdir(parents=True)
        nb = new_notebook(cells=[new_code_cell(f"### BEGIN HIDDEN TESTS\nassert {secrets[name]!r}\n### END HIDDEN TESTS")])
        nbformat.write(nb, path)
    cache = Path(tempfile.mkdtemp(prefix="sandbox-cache-"))  # the model cache the kernel is handed: a folder of its own
    (cache / "model").mkdir()
    (cache / "model" / "model.txt").write_text("MODEL-MARK")
    (cache / "hidden-inside").mkdir()
    (cache / "hidden-inside" / "note.txt").write_text("MASKED-MARK")
    for path in [top, *top.rglob("*"), cache, *cache.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield {"top": top, "secrets": secrets, "files": files, "cache": cache}
    shutil.rmtree(top, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)


# --- fast: what the spec lists, and what describe() says ------------------------------------


def test_kernel_view_lists_the_course_code_never_the_repository(tmp_path):
    import utils

    view = kernel_view(tmp_path, {"COURSE_CACHE": str(tmp_path / "cache")}, [str(REPO / "solutions")])
    ro = view["read_only"]
    assert os.path.realpath(sys.base_prefix) in ro and os.path.realpath(sys.prefix) in ro
    assert str(Path(utils.__file__).resolve().parent) in ro and str(REPO / "tools") in ro
    for folder in ("solutions", "labs", "tests", ""):
        assert not any(p == str(REPO / folder).rstrip("/") or str(REPO / folder).startswith(p + "/") for p in ro), folder
    assert view["writable"] == [str(tmp_path / n) for n in ("ipc", "home", "tmp")]
    assert view["mask"] == []  # solutions/ is in no allowed folder, so there is nothing to cover
    inside = kernel_view(tmp_path, {"COURSE_CACHE": str(tmp_path)}, [str(tmp_path / "ipc"), "/elsewhere"])
    assert inside["mask"] == [str(tmp_path / "ipc")]  # a hidden folder inside an allowed one is still covered


def test_describe_says_what_a_submission_can_read():
    sealed = {"root": True, "namespaces": ["--net"], "pdeathsig": True, "own_root": True, "why": ""}
    assert "own root" in describe(sealed) and "can read every file" not in describe(sealed)
    for isolation in ({"root": False, "namespaces": [], "pdeathsig": True, "own_root": False, "why": "`unshare` is not installed"},
                      {"root": True, "namespaces": ["--net"], "pdeathsig": True, "own_root": False, "why": "pivot failed"}):
        line = describe(isolation)
        assert "WARNING: the kernel can read every file" in line and "solutions/" in line, line
        assert isolation["why"] in line


def test_without_namespaces_the_run_says_the_kernel_reads_everything(tmp_path, monkeypatch):
    """A machine where `unshare` is refused (no user namespaces for this user): the fallback is said loudly."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "unshare").write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    (fake / "unshare").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    isolation = probe.__wrapped__()  # not the cached answer for this machine
    assert (isolation["namespaces"], isolation["own_root"]) == ([], False)
    assert "not permitted" in isolation["why"]
    assert "WARNING: the kernel can read every file" in describe(isolation)


# --- the wrapper itself, with a script in place of the kernel -------------------------------

SEE = r"""
import json, os, sys
secret_paths, cache, masked = json.loads(sys.argv[1])
out = {"uid": os.getuid(), "root": sorted(os.listdir("/")), "tmp": sorted(os.listdir("/tmp")), "pids": [p for p in os.listdir("/proc") if p.isdigit()],
       "status": {l.split(":")[0]: l.split()[1] for l in open("/proc/self/status") if l.startswith(("CapEff", "CapBnd", "NoNewPrivs"))},
       "repo": sorted(os.listdir(%(repo)r)), "read": {}, "write": {}}
for path in secret_paths + [%(solution)r, cache + "/model/model.txt"]:
    try:
        out["read"][path] = open(path).read()
    except OSError as err:
        out["read"][path] = type(err).__name__
out["masked"] = sorted(os.listdir(masked))
for path in ["here.txt", os.environ.get("HOME", "/nohome") + "/h.txt", %(repo)r + "/utils/x.txt", "/x.txt", cache + "/x.txt"]:
    try:
        open(path, "w").write("x")
        out["write"][path] = "ok"
    except OSError as err:
        out["write"][path] = type(err).__name__
import utils
out["utils"] = utils.__file__
print(json.dumps(out))
""" % {"repo": str(REPO), "solution": str(REPO_SOLUTION)}


def test_wrapper_root_holds_only_what_the_spec_allows(planted):
    isolation = own_root_or_skip()
    job = Path(tempfile.mkdtemp(prefix="grader-job-"))
    job.chmod(0o711)
    cwd = job / "course" / "autograded" / "student" / TINY
    cwd.mkdir(parents=True)
    (job / "course").chmod(0o711)
    uid = None
    try:
        masked = planted["cache"] / "hidden-inside"
        _, spec, uid = prepare_spec(job, Limits(), [str(masked), str(REPO / "solutions")], {"COURSE_CACHE": str(planted["cache"])})
        args = json.dumps([[str(p) for p in planted["files"].values()], str(planted["cache"]), str(masked)])
        done = subprocess.run([*_prefix(isolation), sys.executable, "-m", "tools.grading.confine", str(spec), "--",
                               sys.executable, "-c", SEE, args], cwd=cwd, capture_output=True, text=True, timeout=120)
        log = (job / "kernel.log").read_text()
        assert done.returncode == 0, log[-3000:]
        seen = json.loads(log.strip().splitlines()[-1])
    finally:
        if uid is not None:
            kill_uid(uid)
        shutil.rmtree(job, ignore_errors=True)
    for path in planted["files"].values():
        assert seen["read"][str(path)] == "FileNotFoundError", seen["read"]
    assert seen["read"][str(REPO_SOLUTION)] == "FileNotFoundError"
    assert seen["read"][f"{planted['cache']}/model/model.txt"] == "MODEL-MARK"
    assert seen["masked"] == []  # a `hide` folder inside the allowed cache is covered
    assert set(seen["repo"]) <= {"utils", "tools", ".venv", ".venv-gguf"}, seen["repo"]
    assert seen["tmp"] == _expected_tmp(job, planted)  # the machine's /tmp (the planted folder, other jobs) is not there
    assert not {"home", "opt", "var", "srv", "mnt"} & set(seen["root"]), seen["root"]
    assert seen["pids"] == ["1"]  # its own pid space, its own /proc
    assert seen["status"]["CapEff"] == "0000000000000000" and seen["status"]["NoNewPrivs"] == "1"
    assert seen["write"]["here.txt"] == "ok" and seen["write"][str(job / "home" / "h.txt")] == "ok"
    assert seen["write"][f"{REPO}/utils/x.txt"] == "OSError" and seen["write"]["/x.txt"] == "OSError"  # read-only (EROFS)
    assert seen["write"][f"{planted['cache']}/x.txt"] in ("OSError", "PermissionError")
    assert seen["utils"].startswith(str(REPO))
    if isolation["root"]:
        assert seen["uid"] >= 1_000_000  # the job's fresh uid


def test_wrapper_in_a_user_namespace_for_a_grader_without_root(planted, tmp_path):
    """A grader that is not root: `unshare --user --map-root-user`, the same root, and no capability left."""
    python = "/usr/bin/python3"
    if os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists(python):
        pytest.skip("needs root (to become an unprivileged user) and a system python3")
    nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    flags = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--user", "--map-root-user"]
    if subprocess.run([*nobody, *flags, "true"], capture_output=True).returncode != 0:
        pytest.skip("user namespaces are not permitted for an unprivileged user here")
    job = Path(tempfile.mkdtemp(prefix="grader-job-"))
    cwd = job / "work"
    cwd.mkdir()
    for name in ("ipc", "home", "tmp"):
        (job / name).mkdir()
    masked = planted["cache"] / "hidden-inside"
    spec = {"limits": {"memory_mb": 2048, "file_mb": 64, "cpu_seconds": 60, "nproc": 64}, "uid": None, "own_network": True, "own": [],
            "view": {"read_only": [str(REPO / "utils"), str(REPO / "tools"), str(planted["cache"])],
                     "writable": [str(job / n) for n in ("ipc", "home", "tmp")], "links": {}, "mask": [str(masked)]},
            "env": {"HOME": str(job / "home"), "PYTHONPATH": str(REPO)}}
    (job / "sandbox.json").write_text(json.dumps(spec))
    subprocess.run(["chown", "-R", "65534:65534", str(job)], check=True)
    args = json.dumps([[str(p) for p in planted["files"].values()], str(planted["cache"]), str(masked)])
    try:
        done = subprocess.run([*nobody, *flags, python, "-m", "tools.grading.confine", str(job / "sandbox.json"), "--", python, "-c", SEE, args],
                              cwd=cwd, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
        log = (job / "kernel.log").read_text()
        assert done.returncode == 0, log[-3000:] + done.stderr[-2000:]
        seen = json.loads(log.strip().splitlines()[-1])
        remount = subprocess.run([*nobody, *flags, python, "-m", "tools.grading.confine", str(job / "sandbox.json"), "--",
                                  "mount", "-o", "remount,rw,bind", str(REPO / "utils")], cwd=cwd, capture_output=True, timeout=60)
    finally:
        shutil.rmtree(job, ignore_errors=True)
    assert seen["uid"] == 0  # root of its user namespace only...
    assert seen["status"] == {"CapEff": "0000000000000000", "CapBnd": "0000000000000000", "NoNewPrivs": "1"}  # ...holding nothing
    assert remount.returncode != 0  # so it cannot make the course code writable, or unmount its way out
    for path in planted["files"].values():
        assert seen["read"][str(path)] == "FileNotFoundError"
    assert seen["read"][str(REPO_SOLUTION)] == "FileNotFoundError"
    assert seen["masked"] == [] and seen["tmp"] == _expected_tmp(job, planted) and seen["pids"] == ["1"]
    assert seen["write"]["here.txt"] == "ok" and seen["write"][f"{REPO}/utils/x.txt"] == "OSError"


# --- one real kernel through the grading engine ---------------------------------------------


def tiny_course(root: Path) -> Course:
    """A one-exercise nbgrader lab with a hidden test; its release generated by nbgrader."""
    meta = lambda **kw: {"nbgrader": {"schema_version": 3, "locked": False, "solution": False, "grade": False, **kw}}
    source = new_notebook(cells=[
        new_code_cell("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION", metadata=meta(grade_id="add", solution=True)),
        new_code_cell("assert add(1, 2) == 3\n### BEGIN HIDDEN TESTS\nassert add(-1, 1) == 0\n### END HIDDEN TESTS",
                      metadata=meta(grade_id="test_add", grade=True, locked=True, points=2)),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    (root / "solutions").mkdir(parents=True)
    nbformat.write(source, root / "solutions" / f"{TINY}.ipynb")
    release = template(str(root.resolve()), TINY, True) / "release" / TINY / f"{TINY}.ipynb"
    (root / "labs").mkdir()
    (root / "labs" / f"{TINY}.ipynb").write_bytes(release.read_bytes())
    return Course(root)


ATTACK = """import glob, os
for path in {paths!r}:
    try:
        print("READ", path, open(path, errors="replace").read())
    except OSError as err:
        print("blocked", type(err).__name__, path)
for folder in ["/", "/tmp", "/root", "/work", "/home", {repo!r}]:
    try:
        print("LIST", folder, sorted(os.listdir(folder)))
    except OSError as err:
        print("blocked", type(err).__name__, folder)
for pattern in ["/*/solutions/*.ipynb", "/*/*/solutions/*.ipynb", "/*/*/*/solutions/*.ipynb", "/tmp/**/*.ipynb"]:
    for path in glob.glob(pattern, recursive=True):
        try:
            print("FOUND", path, open(path, errors="replace").read()[:20000])
        except OSError as err:
            print("FOUND blocked", type(err).__name__, path)"""

NEEDS = """import os, utils
print("UTILS-OK", utils.__file__)
print("MODEL-OK", open(os.path.join(os.environ["COURSE_CACHE"], "model", "model.txt")).read())
open("written.txt", "w").write("cwd")
print("CWD-OK", open("written.txt").read())
home = os.path.join(os.environ["HOME"], "h.txt")
open(home, "w").write("home")
print("HOME-OK", open(home).read())"""


def attack(course: Course, planted: dict) -> tuple:
    """Grade a correct submission that also tries to read every planted secret: (result, text of every output)."""
    release = nbformat.read(course.labs / f"{TINY}.ipynb", as_version=4)
    answer = next(c for c in release.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "add")
    answer.source = "def add(a, b):\n    return a + b"
    paths = [str(p) for p in planted["files"].values()] + [str(course.solutions / f"{TINY}.ipynb"), str(REPO_SOLUTION)]
    release.cells[1:1] = [new_code_cell(ATTACK.format(paths=paths, repo=str(REPO))), new_code_cell(NEEDS)]
    result = grade_notebook(course, TINY, nbformat.writes(release).encode(), Limits(cell_timeout=60),
                            env={"COURSE_CACHE": str(planted["cache"])})
    outputs = json.loads(result.autograded)["cells"] if result.autograded else []
    text = "\n".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                     for c in outputs for o in c.get("outputs", []) if o.get("output_type") == "stream")
    return result, text


@pytest.mark.slow
def test_a_submission_cannot_read_any_solutions_or_another_students_notebook(planted, tmp_path):
    own_root_or_skip()
    course = tiny_course(tmp_path / "tiny-course")  # graded with this repository's venv: installed from another folder
    result, text = attack(course, planted)
    print(text[:6000])
    for name, secret in planted["secrets"].items():
        assert secret not in text, f"the {name} secret leaked into the autograded notebook"
        assert secret not in (result.feedback or "") and secret not in (result.autograded or "")
    assert "BEGIN HIDDEN TESTS" not in text  # no solutions notebook at all: the planted clone's, the tiny course's, this repository's
    assert "READ " not in text and "FOUND /" not in text.replace("FOUND blocked", "")
    listed = {line.split(" ", 2)[1]: line.split(" ", 2)[2] for line in text.splitlines() if line.startswith("LIST ")}
    assert planted["top"].name not in listed["/tmp"] and "'solutions'" not in listed[str(REPO)], listed
    # what it needs, it has
    assert (result.status, result.score, result.auto_max) == ("ok", 2.0, 2.0), result.table()
    for mark in ("UTILS-OK " + str(REPO), "MODEL-OK MODEL-MARK", "CWD-OK cwd", "HOME-OK home"):
        assert mark in text, mark


def _expected_tmp(job, planted) -> list[str]:
    """What the kernel's /tmp may hold: its job, the model cache, and the course's own folders when the checkout (or
    its venv) itself lives under /tmp, as a CI clone may."""
    allowed = {job.name, planted["cache"].name}
    tmp = Path(tempfile.gettempdir()).resolve()
    for path in (REPO, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()):
        if path.resolve().is_relative_to(tmp) and path.resolve() != tmp:
            allowed.add(path.resolve().relative_to(tmp).parts[0])
    return sorted(allowed)

