"""Start JupyterLab as a student or an instructor would, for the browser tests: loopback, a token, a free port.

Each server gets its own Jupyter config, runtime, settings and workspace folders, so nothing on the machine
(~/.jupyter, an old workspace) changes what the browser sees; `JUPYTER_CONFIG_DIR`, when set, is used instead
(that is how the tier is shown to fail with nbgrader's extension disabled). Kernels run under the `grade`
profile: the cells are the student's, the sizes the autograder's, so the tier fits its time budget.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

VENV_BIN = Path(sys.executable).parent

# Settings a fresh JupyterLab would otherwise ask about or change between versions: no news pop-up, and every cell
# of a notebook kept in the page (windowing "none"), so a test can find cell 30 without scrolling it into view.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    token: str
    root: Path
    log: Path
    pages: int = 0

    def lab_url(self, path: str = "") -> str:
        """The JupyterLab page for a file under the root (or the launcher); the token logs the browser in. Each call
        gets a workspace of its own, so no tab an earlier test opened is restored next to it."""
        self.pages += 1
        page = f"/tree/{path}" if path else ""
        return f"{self.url}/lab/workspaces/test{self.pages}{page}?token={self.token}"

    def api(self, path: str) -> dict:
        request = urllib.request.Request(f"{self.url}/api/{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(folder: Path) -> None:
    for name, values in LAB_SETTINGS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@contextmanager
def jupyterlab(root: Path, log: Path, *, cwd: Path | None = None, extra_env: dict | None = None, timeout: float = 90):
    """A running JupyterLab serving `root`; stopped (with its kernels) on exit. The server's output goes to `log`."""
    scratch = Path(tempfile.mkdtemp(prefix="browser-jupyter-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "NBGRADER", "MPLBACKEND"))}
    if os.environ.get("JUPYTER_CONFIG_DIR"):
        env["JUPYTER_CONFIG_DIR"] = os.environ["JUPYTER_CONFIG_DIR"]
    else:
        env["JUPYTER_CONFIG_DIR"] = str(scratch / "config")
    _write_settings(scratch / "settings")
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(scratch / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(scratch / "workspaces"),
        "IPYTHONDIR": str(scratch / "ipython"),
        "COURSE_PROFILE": "grade",
        **(extra_env or {}),
    })
    port, token = free_port(), secrets.token_hex(16)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:  # CI and containers (NGC on the Spark) run as root, which JupyterLab refuses without this
        command.append("--allow-root")
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd or root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", token, Path(root), log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab on {root} exited with {process.returncode} before answering; "
                                   f"its log {log} ends:\n{log.read_text()[-3000:]}")
            try:
                server.api("status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab on {root} did not answer on port {port} within {timeout:.0f} s; "
                                       f"log {log}") from None
                time.sleep(0.5)
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and its kernels (they share its process group), politely first."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, 15)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass
