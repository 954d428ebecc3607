"""What the tests of `tools.model_test` share: the command run as a user runs it, the one-line error check, a
llama.cpp server started with extra options (an API key, TLS) whose process a test may kill, and loopback
stand-ins for servers that answer wrongly or slowly (and for Ollama's own API, which cannot be installed here)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def model_test(*args, timeout=300, env=None):
    """The command as a user runs it: a fresh process, its exit code, stdout and stderr."""
    full_env = None if env is None else {**os.environ, **env}
    result = subprocess.run([sys.executable, "-m", "tools.model_test", *map(str, args)], cwd=REPO,
                            capture_output=True, text=True, timeout=timeout, env=full_env)
    return result.returncode, result.stdout, result.stderr


def assert_one_line_error(code, stderr, *needles):
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("model_test: error:"), stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@contextlib.contextmanager
def llama_server(gguf, alias, *extra, scheme="http", ready=None, startup_timeout=120):
    """llama-cpp-python's server with extra command-line options; yields (API root, process), so a test can kill it.
    `ready(base_url)` says whether it answers yet (default: GET /models is 200 without a key)."""
    import httpx

    from utils.llama_cpp_engine import free_port, server_command, stop_process

    port = free_port()
    base_url = f"{scheme}://127.0.0.1:{port}/v1"
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log", "w+")
    process = subprocess.Popen(server_command(gguf, alias, port) + [str(x) for x in extra], stdout=log, stderr=subprocess.STDOUT)
    ready = ready or (lambda url: httpx.get(f"{url}/models", timeout=2, trust_env=False).status_code == 200)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            assert process.poll() is None, f"the server exited: {log.seek(0) or log.read()[-2000:]}"
            try:
                if ready(base_url):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield base_url, process
    finally:
        stop_process(process)
        log.close()


class Stub(http.server.BaseHTTPRequestHandler):
    """A loopback stand-in: lists one model ("stub"), then answers chat requests as `mode` says: "ok" (one
    streamed word), "malformed" (HTML), "bad-event" (a chunk without choices), "slow" (late), "drop" (closes the
    connection without an answer), "html-error" (HTTP 500 with a page). Also Ollama's blob upload (slow by
    `upload_delay`), create and tags endpoints, for --modelfile."""

    mode = "malformed"
    upload_delay = 0.0
    seen: list  # (method, path, Authorization header) of every request

    def log_message(self, *args):
        pass

    def _send(self, body: bytes, content_type="application/json", status=200):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.seen.append(("GET", self.path, self.headers.get("Authorization")))
        if self.path.startswith("/api/tags"):
            self._send(json.dumps({"models": [{"model": "stub:latest", "name": "stub:latest"}]}).encode())
        else:
            self._send(json.dumps({"object": "list", "data": [{"id": "stub", "object": "model"}]}).encode())

    def do_POST(self):
        self.seen.append(("POST", self.path, self.headers.get("Authorization")))
        length = int(self.headers.get("Content-Length", 0) or 0)
        self.rfile.read(length)
        if self.path.startswith("/api/blobs/"):
            time.sleep(self.upload_delay)
            return self._send(b"", status=201)
        if self.path.startswith("/api/create"):
            return self._send(json.dumps({"status": "success"}).encode())
        if self.mode == "ok":
            chunk = {"id": "1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hello"}}]}
            self._send(b"event: message\ndata: " + json.dumps(chunk).encode() + b"\n\n: comment\n\ndata: [DONE]\n\n", "text/event-stream")
        elif self.mode == "slow":
            time.sleep(3)
            self._send(b"data: [DONE]\n\n", "text/event-stream")
        elif self.mode == "bad-event":
            self._send(b'data: {"id": 1, "object": "chat.completion.chunk"}\n\n', "text/event-stream")
        elif self.mode == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
        elif self.mode == "html-error":
            self._send(b"<html><h1>Internal\nServer Error</h1></html>", "text/html", status=500)
        else:
            self._send(b"<html>this is not an event stream</html>\n", "text/html")


@contextlib.contextmanager
def stub_servers():
    """start(mode, upload_delay=0) -> the stub's API root (…/v1); the handler class is `start.last`."""
    servers = []

    def start(mode, upload_delay=0.0):
        handler = type("Handler", (Stub,), {"mode": mode, "upload_delay": upload_delay, "seen": []})
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        start.last = handler
        return f"http://127.0.0.1:{httpd.server_address[1]}/v1"

    try:
        yield start
    finally:
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()
