"""utils.llama_cpp_engine: llama.cpp keeps to the kernel's thread count in process and as a server, the server listens
on loopback only, and a child process that ignores SIGTERM is killed after the grace period.

Serving a real GGUF over HTTP: tests/test_model_test.py and tests/test_lab_3_1_10.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from utils.llama_cpp_engine import free_port, load_gguf, server_command, stop_process


class _RecordedLlama:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


@pytest.mark.deploy
def test_llama_cpp_keeps_to_the_kernels_threads(monkeypatch, tmp_path):
    """Two grading kernels on two cores: llama.cpp must use OMP_NUM_THREADS for prompt processing too.

    llama-cpp-python's default for the batch threads is every core, and llama.cpp's threads spin: with
    that default two Lab 3.1.10 kernels took 53.9 s per submission instead of 16.3 s (README, Benchmark).
    """
    import llama_cpp

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(llama_cpp, "Llama", _RecordedLlama)
    kwargs = load_gguf(tmp_path / "model.gguf").kwargs
    assert (kwargs["n_threads"], kwargs["n_threads_batch"]) == (1, 1)
    command = server_command(tmp_path / "model.gguf", "m", 8080)
    assert command[command.index("--n_threads") + 1] == command[command.index("--n_threads_batch") + 1] == "1"
    assert command[command.index("--host") + 1] == "127.0.0.1"


def test_server_command_serves_one_file_on_the_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    command = server_command(tmp_path / "m.gguf", "course-model", 8123, n_ctx=1024)
    assert command[:3] == [sys.executable, "-m", "llama_cpp.server"]
    options = dict(zip(command[3::2], command[4::2]))
    assert options == {"--model": str(tmp_path / "m.gguf"), "--model_alias": "course-model", "--host": "127.0.0.1", "--port": "8123",
                       "--n_ctx": "1024", "--n_gpu_layers": "0", "--n_threads": "2", "--n_threads_batch": "2", "--verbose": "False"}


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))


def _child(code: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"  # its signal handlers are in place
    return process


def test_stop_process_terminates_then_kills():
    polite = _child("import time; print('ready', flush=True); time.sleep(60)")
    stop_process(polite, grace=10)
    assert polite.returncode == -15  # SIGTERM was enough
    stubborn = _child("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)")
    started = time.monotonic()
    stop_process(stubborn, grace=0.5)
    assert stubborn.returncode == -9 and time.monotonic() - started < 10  # SIGKILL after the grace period
    stop_process(stubborn)  # a finished process: nothing to do
