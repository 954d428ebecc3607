"""llama.cpp running a GGUF file, on the CPU: in this process (`load_gguf`, llama-cpp-python's `Llama`), or as
llama-cpp-python's OpenAI-compatible server on loopback (`serve_gguf`), which `utils.served_model_client` then tests. Both take
llama.cpp's thread count from `utils.deploy_tools.llama_threads`, for generation and prompt processing alike.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from utils.deploy_tools import SETUP_HINT, llama_threads


def load_gguf(path: str | Path, n_ctx: int = 512, threads: int | None = None):
    """A llama.cpp model in this process (CPU), quiet, with a context long enough for the course prompts."""
    try:
        from llama_cpp import Llama
    except ImportError as err:
        raise FileNotFoundError(f"llama-cpp-python is not installed; {SETUP_HINT}") from err
    # logits_all: keep every evaluated position's logits in `llm.scores` (the parity checks read them)
    threads = threads or llama_threads()
    return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_gpu_layers=0,
                 seed=0, logits_all=True, verbose=False)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(path: str | Path, alias: str, port: int, n_ctx: int = 512) -> list[str]:
    """The llama-cpp-python server's command line: CPU only, loopback only, llama_threads() for both kinds of work."""
    threads = str(llama_threads())
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--model_alias", alias,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_gpu_layers", "0",
            "--n_threads", threads, "--n_threads_batch", threads, "--verbose", "False"]


@contextlib.contextmanager
def serve_gguf(path: str | Path, alias: str, port: int | None = None, n_ctx: int = 512, startup_timeout: float = 120):
    """Run llama-cpp-python's server for one GGUF on 127.0.0.1 for the block; yields the API root (…/v1)."""
    import httpx

    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = server_command(path, alias, port, n_ctx)
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log", "w+")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if server.poll() is not None:
                log.seek(0)
                tail = "\n".join(log.read().strip().splitlines()[-6:])
                if "No module named llama_cpp" in tail:
                    raise FileNotFoundError(f"llama-cpp-python's server is not installed; {SETUP_HINT}")
                raise RuntimeError(f"llama.cpp server for {path} exited with {server.returncode}:\n{tail}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"llama.cpp server for {path} did not answer within {startup_timeout:g} s")
            time.sleep(0.2)
        yield base_url
    finally:
        stop_process(server)
        log.close()


def stop_process(process, grace: float = 10) -> None:
    """Ask a child process to stop (SIGTERM), and kill it if it has not within `grace` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
