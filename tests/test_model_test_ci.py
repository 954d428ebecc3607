"""`tools.model_test` as a CI step, against real llama.cpp servers on loopback: an API key sent and required, TLS
with a private CA, a proxy honoured, JUnit XML, each gate failing when it should, a partial report after the server
is killed halfway, a separate upload timeout for Ollama (a loopback stand-in: no Ollama server can be installed
here), an even spread for --limit, and one line, no traceback, for every failure."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from deploy_fixtures import course_gguf
from model_test_helpers import REPO, assert_one_line_error, llama_server, model_test, stub_servers
from utils.llama_cpp_engine import serve_gguf
from utils.served_model_client import course_questions

pytestmark = pytest.mark.deploy

ALIAS = "smollm2-course"
KEY = "sk-course-test-key"
NEVER = {"kind": "regex", "pattern": "^NEVER-THIS-REPLY$"}  # fails on any reply a model gives here
ANY = {"kind": "regex", "pattern": "(?s)."}  # passes on any non-empty reply


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", folder / "key.pem", "-out", folder / "cert.pem",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture(scope="module")
def secured(tls_files):
    """llama.cpp's server requiring an API key, over TLS with a self-signed certificate."""
    import ssl

    import httpx

    cert, key = tls_files
    trust = ssl.create_default_context(cafile=str(cert))
    ready = lambda url: httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}, verify=trust, timeout=2).status_code == 200
    with llama_server(course_gguf("f16"), ALIAS, "--api_key", KEY, "--ssl_keyfile", key, "--ssl_certfile", cert, scheme="https", ready=ready) as (url, _):
        yield url


@pytest.fixture(scope="module")
def server():
    with serve_gguf(course_gguf("f16"), alias=ALIAS) as base_url:
        yield base_url


@pytest.fixture
def stub():
    with stub_servers() as start:
        yield start


def questions_file(path, *records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ---------------------------------------------------------------- key, TLS, proxy

def test_api_key_is_required_and_sent(secured, tls_files, tmp_path):
    cert, _ = tls_files
    base = ("--base-url", secured, "--model", ALIAS, "--limit", 1, "--max-tokens", 4, "--ca-bundle", cert)
    code, _, err = model_test(*base, "--out", tmp_path / "a", env={"OPENAI_API_KEY": ""})
    assert_one_line_error(code, err, "HTTP 401", "Invalid API key", "--api-key")
    code, _, err = model_test(*base, "--api-key", "wrong", "--out", tmp_path / "b")
    assert_one_line_error(code, err, "HTTP 401")
    code, out, err = model_test(*base, "--api-key", KEY, "--out", tmp_path / "c")
    assert code == 0, err
    code, out, err = model_test(*base, "--out", tmp_path / "d", env={"OPENAI_API_KEY": KEY})
    assert code == 0, err
    assert json.loads((tmp_path / "d" / "report.json").read_text())["rows"][0]["reply"]


def test_private_ca_from_option_or_environment(secured, tls_files, tmp_path):
    cert, _ = tls_files
    base = ("--base-url", secured, "--model", ALIAS, "--limit", 1, "--max-tokens", 4, "--api-key", KEY)
    code, _, err = model_test(*base, "--out", tmp_path / "a", env={"SSL_CERT_FILE": ""})
    assert_one_line_error(code, err, "not trusted", "CERTIFICATE_VERIFY_FAILED", "--ca-bundle")
    code, _, err = model_test(*base, "--out", tmp_path / "b", env={"SSL_CERT_FILE": str(cert)})
    assert code == 0, err
    code, _, err = model_test(*base, "--ca-bundle", tmp_path / "none.pem", "--out", tmp_path / "c")
    assert_one_line_error(code, err, "--ca-bundle", "none.pem", "cannot load CA certificates")


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A forward HTTP proxy on loopback that relays to `target` (host:port) and records what it relayed."""

    target = ""
    relayed: list

    def log_message(self, *args):
        pass

    def _relay(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0)) or None
        self.relayed.append((self.command, self.path, self.headers.get("Authorization")))
        path = self.path.split("/", 3)[3]  # an absolute URI: http://host:port/path
        request = urllib.request.Request(f"http://{self.target}/{path}", data=body, method=self.command,
                                         headers={k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")})
        with urllib.request.urlopen(request, timeout=60) as response:
            data = response.read()
            self.send_response(response.status)
            self.send_header("Content-Type", response.headers.get("Content-Type", ""))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _relay


def test_proxy_is_honoured_except_for_loopback(server, tmp_path):
    target = server.split("//")[1].split("/")[0]
    handler = type("Handler", (_Proxy,), {"target": target, "relayed": []})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        address = f"http://127.0.0.1:{proxy.server_address[1]}"
        env = {"HTTP_PROXY": address, "http_proxy": address, "NO_PROXY": "", "no_proxy": ""}
        # a name only the proxy can resolve (it relays to the loopback server): reached through the proxy, key and all
        code, _, err = model_test("--base-url", "http://model-host.invalid:8080/v1", "--model", ALIAS, "--limit", 1, "--max-tokens", 4,
                                  "--api-key", KEY, "--out", tmp_path / "a", env=env)
        assert code == 0, err
        assert [(m, p) for m, p, _ in handler.relayed] == [("GET", "http://model-host.invalid:8080/v1/models"),
                                                          ("POST", "http://model-host.invalid:8080/v1/chat/completions")]
        assert all(auth == f"Bearer {KEY}" for _, _, auth in handler.relayed)
        # the loopback server itself is reached directly, even with a proxy set
        code, _, err = model_test("--base-url", server, "--model", ALIAS, "--limit", 1, "--max-tokens", 4, "--out", tmp_path / "b", env=env)
        assert code == 0 and len(handler.relayed) == 2, err
        dead = {**env, "HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
        code, _, err = model_test("--base-url", "http://model-host.invalid:8080/v1", "--model", ALIAS, "--limit", 1, "--out", tmp_path / "c", env=dead)
        assert_one_line_error(code, err, "proxy", "HTTPS_PROXY/HTTP_PROXY/NO_PROXY")
    finally:
        proxy.shutdown()
        proxy.server_close()


# ---------------------------------------------------------------- JUnit and gates

def test_junit_and_gates_on_a_real_run(server, tmp_path):
    path = questions_file(tmp_path / "q.jsonl",
                          {"id": "any", "prompt": "What is the capital of France?", "checks": [ANY]},
                          {"id": "never", "prompt": "Name a colour.", "checks": [NEVER]},
                          {"id": "json", "prompt": "Say hello.", "checks": [{"kind": "json"}]},
                          {"id": "fact", "prompt": "Say the word banana.", "expected": "banana"})
    run = lambda out, *gates: model_test("--base-url", server, "--model", ALIAS, "--questions", path, "--max-tokens", 8,
                                         "--out", tmp_path / out, "--junit", tmp_path / out / "junit.xml", *gates)
    code, out, err = run("first")
    assert code == 0, err
    report = json.loads((tmp_path / "first" / "report.json").read_text())
    rows = {r["id"]: r for r in report["rows"]}
    assert rows["any"]["passed"] and not rows["never"]["passed"] and report["partial"] is None
    try:
        json.loads(rows["json"]["reply"])
        json_ok = True
    except ValueError:
        json_ok = False
    assert rows["json"]["passed"] is json_ok and rows["fact"]["fact"] is ("banana" in rows["fact"]["reply"].lower())
    suite = ET.parse(tmp_path / "first" / "junit.xml").getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["any", "never", "json", "fact"]
    assert suite.get("tests") == "4" and int(suite.get("failures")) == sum(not r["passed"] for r in report["rows"])
    assert cases["any"].find("failure") is None and "NEVER-THIS-REPLY" in cases["never"].find("failure").get("message")

    validity = report["format_validity"]  # 1 of 2 or 2 of 3 format checks: "any" passes, "never" fails
    code, out, err = run("pass", "--min-format-validity", validity, "--min-accuracy", report["fact_accuracy"])
    assert code == 0, err
    assert "gate passed: format validity" in out and "gate passed: fact accuracy" in out
    code, _, err = run("fail", "--min-format-validity", min(1.0, validity + 0.01))
    assert code == 1 and "gate FAILED: format validity" in err and "--min-format-validity" in err and "Traceback" not in err
    gates = ET.parse(tmp_path / "fail" / "junit.xml").getroot().findall("testsuite")[1]
    assert gates.find("testcase").get("name") == "--min-format-validity" and gates.find("testcase/failure") is not None


def test_max_disagreements_against_a_reference_report(server, tmp_path):
    base = ("--base-url", server, "--model", ALIAS, "--limit", 4, "--max-tokens", 8)
    code, _, err = model_test(*base, "--out", tmp_path / "f16")
    assert code == 0, err
    earlier = json.loads((tmp_path / "f16" / "report.json").read_text())
    code, _, err = model_test(*base, "--out", tmp_path / "same", "--reference", tmp_path / "f16" / "report.json", "--max-disagreements", 0)
    assert code == 0, err  # greedy on the same file: the same verdicts
    row = earlier["rows"][0]  # the reference now passes where the served reply fails, or the other way round
    island = {q.id: q.island for q in course_questions(4)}[row["id"]]
    row["reply"] = "" if row["passed"] else json.dumps({"island": island, "answer": row["expected"]})
    (tmp_path / "flipped.json").write_text(json.dumps(earlier))
    code, out, err = model_test(*base, "--out", tmp_path / "one", "--reference", tmp_path / "flipped.json", "--max-disagreements", 1)
    assert code == 0, err
    code, out, err = model_test(*base, "--out", tmp_path / "zero", "--reference", tmp_path / "flipped.json", "--max-disagreements", 0)
    assert code == 1 and "gate FAILED: 1 of 4 questions pass or fail differently" in err and "--max-disagreements 0" in err, err
    assert json.loads((tmp_path / "zero" / "report.json").read_text())["disagreements"] == 1


# ---------------------------------------------------------------- a run that stops early

def test_partial_report_when_the_server_dies_halfway(tmp_path):
    n = 60
    path = questions_file(tmp_path / "q.jsonl", *({"id": f"q{i:02d}", "prompt": f"Count to {i}.", "checks": [ANY]} for i in range(n)))
    out = tmp_path / "out"
    with llama_server(course_gguf("f16"), ALIAS) as (url, process):
        args = ["--base-url", url, "--model", ALIAS, "--questions", path, "--max-tokens", 16, "--out", out, "--junit", out / "junit.xml"]
        run = subprocess.Popen([sys.executable, "-m", "tools.model_test", *map(str, args)], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the report is rewritten after every answer
            if (out / "report.json").is_file() and len(json.loads((out / "report.json").read_text())["rows"]) >= 3:
                break
            time.sleep(0.05)
        process.kill()
        stdout, stderr = run.communicate(timeout=120)
    assert_one_line_error(run.returncode, stderr, f"{url}", "partial report (", f"of {n} questions answered)", str(out / "report.json"))
    report = json.loads((out / "report.json").read_text())
    assert 3 <= len(report["rows"]) < n and len(report["rows"]) + len(report["not_asked"]) == n
    assert report["partial"] and "unfinished" not in report["partial"] and report["partial"] in stderr
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite.get("errors") == "1" and int(suite.get("skipped")) == len(report["not_asked"])


# ---------------------------------------------------------------- Ollama upload, --limit, one-line errors (loopback stand-ins)

def test_upload_timeout_is_separate_from_the_request_timeout(stub, tmp_path):
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF" + bytes(4096))
    (tmp_path / "Modelfile").write_text('FROM ./tiny.gguf\nTEMPLATE """{{ .Prompt }}"""\nPARAMETER temperature 0\n')
    url = stub("ok", upload_delay=1.5)  # the upload takes longer than a reply may
    code, out, err = model_test("--base-url", url, "--model", "stub", "--modelfile", tmp_path / "Modelfile", "--limit", 1,
                                "--timeout", 0.8, "--upload-timeout", 10, "--out", tmp_path / "a")
    assert code == 0, err
    assert any(p.startswith("/api/blobs/sha256:") for _, p, _ in stub.last.seen) and ("POST", "/api/create", None) in stub.last.seen
    code, _, err = model_test("--base-url", url, "--model", "stub", "--modelfile", tmp_path / "Modelfile", "--limit", 1,
                              "--timeout", 10, "--upload-timeout", 0.5, "--out", tmp_path / "b")
    assert_one_line_error(code, err, "--upload-timeout 0.5 s", "did not answer within 0.5 s")


def test_limit_spreads_across_a_questions_file(stub, tmp_path):
    path = questions_file(tmp_path / "q.jsonl", *({"id": f"q{i}", "prompt": "p", "expected": "hello"} for i in range(12)))
    code, _, err = model_test("--base-url", stub("ok"), "--model", "stub", "--questions", path, "--limit", 4, "--out", tmp_path / "r")
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [r["id"] for r in report["rows"]] == ["q0", "q3", "q6", "q9"] and report["fact_accuracy"] == 1.0


@pytest.mark.parametrize("mode, needles", [
    ("drop", ["request to", "failed: RemoteProtocolError"]),
    ("html-error", ["answered HTTP 500", "Internal Server Error"]),
])
def test_transport_and_status_failures_are_one_line(stub, tmp_path, mode, needles):
    code, _, err = model_test("--base-url", stub(mode), "--model", "stub", "--limit", 2, "--out", tmp_path, "--timeout", 5)
    assert_one_line_error(code, err, *needles, "partial report (0 of 2 questions answered)")


def test_input_failures_are_one_line(stub, tmp_path):
    url = stub("ok")
    (tmp_path / "blocker").write_text("a file where --out wants a folder")
    code, _, err = model_test("--base-url", url, "--model", "stub", "--limit", 1, "--out", tmp_path / "blocker" / "out")
    assert_one_line_error(code, err, "blocker")
    (tmp_path / "ref.json").write_text('{"rows": [{"id": 1}]')
    code, _, err = model_test("--base-url", url, "--model", "stub", "--limit", 1, "--reference", tmp_path / "ref.json", "--out", tmp_path / "o")
    assert_one_line_error(code, err, "ref.json: not a model_test JSON report")
    bad = questions_file(tmp_path / "q.jsonl", {"prompt": "p", "checks": [{"kind": "regex", "pattern": "[z-a]"}]})
    code, _, err = model_test("--base-url", url, "--model", "stub", "--questions", bad, "--out", tmp_path / "o")
    assert_one_line_error(code, err, f"{bad} line 1, check 1: a regex check's 'pattern' '[z-a]' is a bad regular expression")
