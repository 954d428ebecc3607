"""Test a served model over the OpenAI-compatible chat API: the check behind `python -m tools.model_test`.

Ollama (under `/v1`), llama.cpp's server (llama-cpp-python's `python -m llama_cpp.server`) and vLLM
all serve `POST /v1/chat/completions`, so one client measures any of them: each question is sent as
a streaming chat request with greedy decoding (temperature 0), and the stream gives the time to the
first token and the decoding speed after it. Replies are judged by each question's checks
(`utils.model_questions`) and compared with a reference's replies (the Hugging Face model's, or an
earlier report), so a served model can be checked against the model it was converted from.

The client is httpx, speaking the chat API directly: the `openai` client (3.x) was tried and does not
serve a tester better: it reads an HTML page answered with HTTP 200 as an empty stream and a chunk
without `choices` as a chunk, refuses to start without an API key (local servers need none), and adds
its own headers. A key, when given, goes out as `Authorization: Bearer`. Proxy settings (HTTP(S)_PROXY,
NO_PROXY) and CA settings (SSL_CERT_FILE, SSL_CERT_DIR, or an explicit CA bundle) are honoured; a server
on the loopback address is always reached directly, since no proxy can reach this machine's loopback.

A server that cannot be reached, refuses the key, does not serve a model, times out or replies
malformed raises `ServerError` with one line that says which; a run that stops part way attaches the
report of the questions answered so far (`err.partial`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from utils.model_questions import Question, course_questions, grade, read_questions
from utils.model_report import ModelTestReport, reference_from_report, summarize
from utils.service_errors import ServerError, error_line  # shared with utils.ollama_client, which builds models

DEFAULT_TIMEOUT_S = 60.0
UNFINISHED = "unfinished: written while the run was going; it never ended normally"  # what a report saved mid-run says


# ---------------------------------------------------------------- the connection

def is_loopback(base_url: str) -> bool:
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_client(base_url: str, timeout: float = DEFAULT_TIMEOUT_S, api_key: str | None = None, ca_bundle: str | Path | None = None):
    """An httpx client for `base_url`: the key as a Bearer token, the environment's proxy and CA settings (or
    `ca_bundle`), and no proxy for a loopback server. A CA file that cannot be read raises ValueError."""
    import ssl

    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    loopback = is_loopback(base_url)
    verify: ssl.SSLContext | bool = True
    cafile = ca_bundle or (os.environ.get("SSL_CERT_FILE") if loopback else None)  # with trust_env, httpx reads it itself
    if cafile:
        what = "--ca-bundle" if ca_bundle else "SSL_CERT_FILE"
        try:
            verify = ssl.create_default_context(cafile=str(cafile))
        except (OSError, ssl.SSLError) as err:
            raise ValueError(f"{what} {cafile}: cannot load CA certificates from it ({getattr(err, 'strerror', None) or error_line(err)})") from None
    try:
        return httpx.Client(timeout=httpx.Timeout(timeout), headers=headers, verify=verify, trust_env=not loopback)
    except (OSError, ssl.SSLError) as err:  # SSL_CERT_FILE / SSL_CERT_DIR naming nothing usable
        raise ValueError(f"cannot load the CA certificates named by SSL_CERT_FILE/SSL_CERT_DIR ({error_line(err)})") from None


def _request(base_url: str, timeout: float, call):
    import httpx

    try:
        return call()
    except httpx.ProxyError as err:
        raise ServerError(f"the proxy for {base_url} failed ({error_line(err)}); check HTTPS_PROXY/HTTP_PROXY/NO_PROXY") from None
    except httpx.ConnectError as err:
        text = error_line(err)
        if "CERTIFICATE_VERIFY_FAILED" in text:
            raise ServerError(f"the TLS certificate of {base_url} is not trusted ({text}); pass --ca-bundle FILE or set SSL_CERT_FILE") from None
        proxy = _proxy_for(base_url)
        if proxy:
            raise ServerError(f"cannot reach {base_url} through the proxy {proxy} ({text}); check HTTPS_PROXY/HTTP_PROXY/NO_PROXY") from None
        raise ServerError(f"cannot reach a server at {base_url} ({text}); is it running?") from None
    except httpx.TimeoutException:
        raise ServerError(f"no reply from {base_url} within {timeout:g} s (timeout; raise --timeout or check the server)") from None
    except httpx.HTTPError as err:
        raise ServerError(f"request to {base_url} failed: {type(err).__name__}: {error_line(err)}") from None


def _proxy_for(base_url: str) -> str | None:
    """The proxy the environment names for this URL (None: reached directly), for error messages."""
    import urllib.request

    if is_loopback(base_url):
        return None
    parts = urlsplit(base_url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    return None if not proxy or urllib.request.proxy_bypass(parts.hostname or "") else proxy


def _status_error(url: str, response, model: str | None = None) -> ServerError:
    text = _error_text(response)
    if response.status_code in (401, 403):
        return ServerError(f"{url} refused the request (HTTP {response.status_code}: {text}); pass the server's key with --api-key or OPENAI_API_KEY")
    if model is not None and (response.status_code == 404 or "not found" in text.lower()):
        return ServerError(f"the server at {url.rsplit('/chat', 1)[0]} does not serve model {model!r} (HTTP {response.status_code}: {text})")
    return ServerError(f"{url} answered HTTP {response.status_code}: {text}")


def _error_text(response) -> str:
    try:
        body = response.json()
        message = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
        if isinstance(message, dict):
            message = message.get("message", message)
        return " ".join(str(message).split())[:200]
    except ValueError:
        return " ".join(response.text.split())[:200] or "(empty body)"


def served_models(base_url: str, timeout: float = DEFAULT_TIMEOUT_S, client=None) -> list[str] | None:
    """The model names the server lists under GET /models (None if it has no such endpoint)."""
    base_url = base_url.rstrip("/")
    own = client is None
    client = open_client(base_url, timeout) if own else client
    try:
        response = _request(base_url, timeout, lambda: client.get(f"{base_url}/models"))
    finally:
        if own:
            client.close()
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise _status_error(f"{base_url}/models", response)
    try:
        return [m["id"] for m in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise ServerError(f"malformed reply from {base_url}/models: not an OpenAI model list ({response.text[:80]!r})") from None


# ---------------------------------------------------------------- one streamed chat request

@dataclass
class Reply:
    text: str
    ttft_s: float  # request sent -> first content token received
    seconds: float  # request sent -> stream finished
    tokens: int  # completion tokens (the server's usage count when it sends one, else content chunks)

    @property
    def tokens_per_second(self) -> float | None:
        """Decoding speed after the first token (None when fewer than two tokens came back)."""
        decode = self.seconds - self.ttft_s
        return (self.tokens - 1) / decode if self.tokens > 1 and decode > 0 else None


def chat(base_url: str, model: str, messages: list, max_tokens: int, timeout: float = DEFAULT_TIMEOUT_S, client=None) -> Reply:
    """One greedy, streamed chat completion: its text, time to first token, duration and token count."""
    base_url = base_url.rstrip("/")
    url = f"{base_url}/chat/completions"
    # Greedy, as the course evaluates: temperature 0 and no penalties. repeat_penalty is llama.cpp's own field (its
    # server applies 1.1 unless told otherwise); servers that do not know it ignore it (Ollama takes it from the
    # Modelfile's PARAMETER repeat_penalty instead).
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0, "seed": 0,
            "frequency_penalty": 0.0, "presence_penalty": 0.0, "repeat_penalty": 1.0,
            "stream": True, "stream_options": {"include_usage": True}}
    own = client is None
    client = open_client(base_url, timeout) if own else client
    try:
        return _request(base_url, timeout, lambda: _stream(client, url, body, model))
    finally:
        if own:
            client.close()


def _events(response, url: str):
    """The `data` of each server-sent event (fields other than data, and comments, are skipped, as the
    SSE format says); anything that is not an event stream is a malformed reply."""
    kind = response.headers.get("content-type", "")
    if "text/event-stream" not in kind:
        head = response.read()[:60]
        raise ServerError(f"malformed reply from {url}: expected server-sent events, got {kind or 'no content type'} ({head!r})")
    data = []
    for line in response.iter_lines():
        if not line.strip():
            if data:
                yield "\n".join(data)
                data = []
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
        elif field not in ("", "event", "id", "retry"):
            raise ServerError(f"malformed reply from {url}: not a server-sent event line: {line[:60]!r}")
    if data:
        yield "\n".join(data)


def _stream(client, url: str, body: dict, model: str) -> Reply:
    started = time.perf_counter()
    first = None
    parts, chunks, usage = [], 0, None
    with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            response.read()
            raise _status_error(url, response, model)
        for data in _events(response, url):
            if data.strip() == "[DONE]":
                break
            try:
                event = json.loads(data)
                if "error" in event:
                    raise ServerError(f"{url} reported an error mid-stream: {' '.join(str(event['error']).split())[:200]}")
                usage = event.get("usage") or usage
                choices = event["choices"]
                content = choices[0].get("delta", {}).get("content") if choices else None
            except (ValueError, KeyError, TypeError, IndexError, AttributeError):
                raise ServerError(f"malformed reply from {url}: a stream event is not an OpenAI chat chunk ({data[:60]!r})") from None
            if content:
                if first is None:
                    first = time.perf_counter()
                parts.append(content)
                chunks += 1
    finished = time.perf_counter()
    if first is None:
        first = finished
    tokens = usage.get("completion_tokens", chunks) if isinstance(usage, dict) else chunks
    return Reply("".join(parts), first - started, finished - started, int(tokens))


# ---------------------------------------------------------------- the whole test

def reference_from_hf(model, tokenizer, questions: list[Question], max_tokens: int) -> dict[str, str]:
    """id -> the Hugging Face model's greedy reply to the same conversation (the course's generation loop)."""
    from utils.evaluation import generate_replies

    replies = generate_replies(model, tokenizer, [q.messages for q in questions], max_tokens, progress=False)
    return {q.id: r for q, r in zip(questions, replies)}


def answer_row(question: Question, reply: Reply, reference: dict[str, str] | None) -> dict:
    """A report row: the reply, its checks' verdicts, its timing, and its agreement with the reference."""
    text = reply.text.strip()
    row = {"id": question.id, "messages": question.messages, "expected": question.answer, "reply": text, **grade(text, question),
           "ttft_s": reply.ttft_s, "seconds": reply.seconds, "tokens": reply.tokens, "tokens_per_second": reply.tokens_per_second}
    ref = None if reference is None else reference.get(question.id)
    ref_passed = None if ref is None else grade(ref.strip(), question)["passed"]
    row.update(reference_reply=ref, reference_passed=ref_passed,
               same_reply=None if ref is None else text == ref.strip(),
               agrees=None if ref is None else row["passed"] == ref_passed)
    return row


def run_model_test(base_url: str, model: str, questions: list[Question] | None = None, max_tokens: int = 24,
                   timeout: float = DEFAULT_TIMEOUT_S, reference: dict[str, str] | None = None,
                   reference_name: str | None = None, progress: bool = False, api_key: str | None = None,
                   ca_bundle: str | Path | None = None, on_row=None) -> ModelTestReport:
    """Ask a served model every question (the course's held-out questions by default) and judge the replies.

    `reference` maps question id -> a reference model's reply; a question agrees when that reply passes or
    fails its checks as the served reply does. `on_row(report)` is called after every answer (the CLI saves
    the report there). Raises ServerError (one line) when the server is unreachable, refuses the key, does
    not serve `model`, times out or replies malformed; `err.partial` then holds the report so far.
    """
    questions = course_questions() if questions is None else questions
    base_url = base_url.rstrip("/")
    reference_name = (reference_name or "reference") if reference is not None else None
    rows: list[dict] = []
    with open_client(base_url, timeout, api_key, ca_bundle) as client:
        try:
            listed = served_models(base_url, timeout, client=client)
            if listed is not None and model not in listed and f"{model}:latest" not in listed:  # Ollama lists "name:latest"
                raise ServerError(f"the server at {base_url} does not serve model {model!r}; it lists: {', '.join(listed) or 'no models'}")
            for i, q in enumerate(questions, start=1):
                rows.append(answer_row(q, chat(base_url, model, q.messages, max_tokens, timeout, client=client), reference))
                if on_row is not None:
                    on_row(summarize(base_url, model, max_tokens, rows, reference_name, UNFINISHED, [x.id for x in questions[i:]]))
                if progress:
                    print(f"\r{i}/{len(questions)} questions", end="", flush=True)
        except (ServerError, KeyboardInterrupt) as err:
            reason = "interrupted (Ctrl-C)" if isinstance(err, KeyboardInterrupt) else str(err)
            err.partial = summarize(base_url, model, max_tokens, rows, reference_name, reason, [q.id for q in questions[len(rows):]])
            raise
        finally:
            if progress:
                print()
    return summarize(base_url, model, max_tokens, rows, reference_name)


__all__ = ["ServerError", "error_line", "Question", "course_questions", "read_questions", "served_models", "chat", "open_client",
           "ModelTestReport", "reference_from_report", "reference_from_hf", "run_model_test"]
