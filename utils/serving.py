"""Test a served model over the OpenAI-compatible chat API: the check behind `python -m tools.model_test`.

Ollama (under `/v1`), llama.cpp's server (llama-cpp-python's `python -m llama_cpp.server`) and vLLM
all serve `POST /v1/chat/completions`, so one client measures any of them: each question is sent as
a streaming chat request with greedy decoding (temperature 0), and the stream gives the time to the
first token and the decoding speed after it. Replies are scored with the course metric
(`utils.evaluation`: fact accuracy, format validity) and compared with a reference's replies (the
Hugging Face model's, or an earlier report), so a served model can be checked against the model it
was converted from.

A server that cannot be reached, a model it does not serve, a request that times out and a reply
that is not what the API promises each raise `ServerError` with one line that says which; bad
question files raise `ValueError` naming the file and line.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from utils.course_data import course_prompt, load_split, parse_jsonl
from utils.evaluation import fact_correct, format_valid

DEFAULT_TIMEOUT_S = 60.0


class ServerError(RuntimeError):
    """The server could not answer as the chat API promises; the message is one line saying why."""


@dataclass(frozen=True)
class Question:
    """One test question: the conversation sent, the answer the reply must contain, and (optionally)
    the island whose house-format JSON object the reply must be (None: format not checked)."""

    id: str
    messages: list
    answer: str
    island: str | None = None


def course_questions(limit: int | None = None, split: str = "test") -> list[Question]:
    """The course's held-out questions, sent exactly as the course trains and evaluates (see course_prompt)."""
    return [Question(ex.id, ex.prompt(), ex.answer, ex.island) for ex in load_split(split, limit)]


def read_questions(path: str | Path) -> list[Question]:
    """A user's JSONL of questions, one object a line: {"prompt": text or chat messages, "expected": answer}
    and optionally "id" and "island" (the house-format check). Errors name the file and the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"{path}: cannot read the question file ({err.strerror or err})") from err
    questions, seen = [], set()
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    for line_no, record in zip(lines, parse_jsonl(text, str(path))):
        where = f"{path} line {line_no}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object with 'prompt' and 'expected', got {type(record).__name__}")
        missing = [k for k in ("prompt", "expected") if k not in record]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(repr(k) for k in missing)}")
        prompt, expected = record["prompt"], record["expected"]
        if isinstance(prompt, str):
            messages = course_prompt(prompt)
        elif isinstance(prompt, list) and prompt and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt):
            messages = prompt
        else:
            raise ValueError(f"{where}: 'prompt' must be a string or a non-empty list of {{'role', 'content'}} messages")
        if not isinstance(expected, str) or not expected.strip():
            raise ValueError(f"{where}: 'expected' must be a non-empty string")
        island = record.get("island")
        if island is not None and not isinstance(island, str):
            raise ValueError(f"{where}: 'island' must be a string")
        qid = str(record.get("id", f"line-{line_no}"))
        if qid in seen:
            raise ValueError(f"{where}: id {qid!r} is used twice")
        seen.add(qid)
        questions.append(Question(qid, messages, expected, island))
    if not questions:
        raise ValueError(f"{path}: no questions (empty file)")
    return questions


# ---------------------------------------------------------------- the chat API

def _client(timeout: float):
    import httpx

    return httpx.Client(timeout=httpx.Timeout(timeout), trust_env=False)  # never through a proxy: servers are local


def _request(base_url: str, timeout: float, call):
    import httpx

    try:
        return call()
    except httpx.ConnectError as err:
        raise ServerError(f"cannot reach a server at {base_url} ({error_line(err)}); is it running?") from None
    except httpx.TimeoutException:
        raise ServerError(f"no reply from {base_url} within {timeout:g} s (timeout; raise --timeout or check the server)") from None
    except httpx.HTTPError as err:
        raise ServerError(f"request to {base_url} failed: {error_line(err)}") from None


def error_line(err: Exception) -> str:
    """The first line of an error, for the one-line messages users see instead of a traceback."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def served_models(base_url: str, timeout: float = DEFAULT_TIMEOUT_S) -> list[str] | None:
    """The model names the server lists under GET /models (None if it has no such endpoint)."""
    base_url = base_url.rstrip("/")
    with _client(timeout) as client:
        response = _request(base_url, timeout, lambda: client.get(f"{base_url}/models"))
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise ServerError(f"{base_url}/models answered HTTP {response.status_code}: {_error_text(response)}")
    try:
        return [m["id"] for m in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise ServerError(f"malformed reply from {base_url}/models: not an OpenAI model list ({response.text[:80]!r})") from None


def _error_text(response) -> str:
    try:
        body = response.json()
        message = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(message, dict):
            message = message.get("message", message)
        return " ".join(str(message).split())[:200]
    except ValueError:
        return " ".join(response.text.split())[:200] or "(empty body)"


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
    client = _client(timeout) if own else client
    try:
        return _request(base_url, timeout, lambda: _stream(client, url, body, model))
    finally:
        if own:
            client.close()


def _stream(client, url: str, body: dict, model: str) -> Reply:
    started = time.perf_counter()
    first = None
    parts, chunks, usage = [], 0, None
    with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            response.read()
            text = _error_text(response)
            if response.status_code == 404 or "not found" in text.lower():
                raise ServerError(f"the server at {url.rsplit('/chat', 1)[0]} does not serve model {model!r} (HTTP {response.status_code}: {text})")
            raise ServerError(f"{url} answered HTTP {response.status_code}: {text}")
        for line in response.iter_lines():
            line = line.strip()
            if not line or line.startswith(":"):
                continue  # keep-alive comments and event separators
            if not line.startswith("data:"):
                raise ServerError(f"malformed reply from {url}: expected server-sent events ('data: ...'), got {line[:60]!r}")
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                break
            try:
                event = json.loads(data)
                if "error" in event:
                    raise ServerError(f"{url} reported an error mid-stream: {event['error']}")
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


# ---------------------------------------------------------------- the report

@dataclass
class ModelTestReport:
    """What `run_model_test` measured: the summary numbers and one row per question."""

    base_url: str
    model: str
    max_tokens: int
    fact_accuracy: float
    format_validity: float | None  # over the questions with a format check (None: no question has one)
    format_checked: int
    tokens_per_second: float | None  # median decoding speed over the questions
    ttft_s: float  # median time to first token
    reference: str | None  # what the replies were compared with
    disagreements: int | None
    rows: list[dict] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.rows)

    def summary(self) -> str:
        fmt = "n/a" if self.format_validity is None else f"{self.format_validity:.1%}"
        speed = "n/a" if self.tokens_per_second is None else f"{self.tokens_per_second:.1f} tokens/s"
        ref = "" if self.reference is None else f", {self.disagreements}/{self.n} replies differ from {self.reference}"
        return f"{self.model} @ {self.base_url}: fact accuracy {self.fact_accuracy:.1%}, format validity {fmt} (n={self.n}), decoding {speed}, first token {self.ttft_s * 1000:.0f} ms (medians){ref}"

    def to_json(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    def table(self, max_rows: int | None = None, width: int = 48) -> str:
        """One line per question: id, fact, format, agreement with the reference, speed, reply."""
        def cut(text, n):
            text = " ".join(str(text).split())
            return text if len(text) <= n else text[: n - 1] + "…"

        header = f"{'id':28} {'fact':4} {'fmt':4} {'ref':4} {'ttft ms':>7} {'tok/s':>6}  reply"
        lines = [header, "-" * len(header)]
        for row in self.rows[:max_rows]:
            fmt = "-" if row["format"] is None else ("ok" if row["format"] else "NO")
            ref = "-" if row.get("agrees") is None else ("=" if row["agrees"] else "DIFF")
            tps = "-" if row["tokens_per_second"] is None else f"{row['tokens_per_second']:.1f}"
            lines.append(f"{cut(row['id'], 28):28} {'ok' if row['fact'] else 'NO':4} {fmt:4} {ref:4} {row['ttft_s'] * 1000:7.0f} {tps:>6}  {cut(row['reply'], width)}")
        if max_rows is not None and self.n > max_rows:
            lines.append(f"... {self.n - max_rows} more rows in the JSON report")
        return "\n".join(lines)

    def plot(self, path: str | Path | None = None):
        """Scores next to the reference's, and time to first token / decoding speed per question."""
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        labels, values = ["fact accuracy"], [self.fact_accuracy]
        if self.format_validity is not None:
            labels.append("format validity")
            values.append(self.format_validity)
        if self.disagreements is not None:
            labels.append(f"agrees with {self.reference}"[:28])
            values.append(1 - self.disagreements / max(self.n, 1))
        axes[0].bar(labels, values, color=["tab:blue", "tab:green", "tab:gray"][: len(values)])
        axes[0].set_ylim(0, 1.05)
        axes[0].set_title(f"{self.model}: {self.n} questions")
        for i, v in enumerate(values):
            axes[0].text(i, v + 0.02, f"{v:.0%}", ha="center")
        ttft = [r["ttft_s"] * 1000 for r in self.rows]
        speed = [r["tokens_per_second"] or 0.0 for r in self.rows]
        axes[1].plot(range(self.n), ttft, "o-", label="time to first token (ms)")
        axes[1].set_xlabel("question")
        axes[1].set_ylabel("ms")
        twin = axes[1].twinx()
        twin.plot(range(self.n), speed, "s--", color="tab:orange", label="decoding tokens/s")
        twin.set_ylabel("tokens/s")
        axes[1].set_title("latency and speed per question")
        fig.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=100)
        return fig


def reference_from_report(path: str | Path) -> dict[str, str]:
    """id -> reply from an earlier JSON report of this command."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        return {str(row["id"]): row["reply"] for row in report["rows"]}
    except OSError as err:
        raise ValueError(f"{path}: cannot read the reference report ({err.strerror or err})") from err
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a model_test JSON report (needs rows with 'id' and 'reply'; {err})") from err


def reference_from_hf(model, tokenizer, questions: list[Question], max_tokens: int) -> dict[str, str]:
    """id -> the Hugging Face model's greedy reply to the same conversation (the course's generation loop)."""
    from utils.evaluation import generate_replies

    replies = generate_replies(model, tokenizer, [q.messages for q in questions], max_tokens, progress=False)
    return {q.id: r for q, r in zip(questions, replies)}


def run_model_test(base_url: str, model: str, questions: list[Question] | None = None, max_tokens: int = 24,
                      timeout: float = DEFAULT_TIMEOUT_S, reference: dict[str, str] | None = None,
                      reference_name: str | None = None, progress: bool = False) -> ModelTestReport:
    """Ask a served model every question (the course's held-out questions by default) and score the replies.

    Raises ServerError (one line) when the server is unreachable, does not serve `model`, times out
    or replies malformed. `reference` maps question id -> reply of a reference model; replies are
    compared after stripping whitespace.
    """
    questions = course_questions() if questions is None else questions
    base_url = base_url.rstrip("/")
    listed = served_models(base_url, timeout)
    if listed is not None and model not in listed and f"{model}:latest" not in listed:  # Ollama lists "name:latest"
        raise ServerError(f"the server at {base_url} does not serve model {model!r}; it lists: {', '.join(listed) or 'no models'}")
    rows = []
    with _client(timeout) as client:
        for i, q in enumerate(questions, start=1):
            reply = chat(base_url, model, q.messages, max_tokens, timeout, client=client)
            text = reply.text.strip()
            ref = None if reference is None else reference.get(q.id)
            rows.append({
                "id": q.id, "messages": q.messages, "expected": q.answer, "reply": text,
                "fact": fact_correct(text, q),
                "format": None if q.island is None else format_valid(text, q),
                "ttft_s": reply.ttft_s, "seconds": reply.seconds, "tokens": reply.tokens,
                "tokens_per_second": reply.tokens_per_second,
                "reference_reply": ref, "agrees": None if ref is None else text == ref.strip(),
            })
            if progress:
                print(f"\r{i}/{len(questions)} questions", end="", flush=True)
    if progress:
        print()
    checked = [r["format"] for r in rows if r["format"] is not None]
    speeds = [r["tokens_per_second"] for r in rows if r["tokens_per_second"] is not None]
    compared = [r["agrees"] for r in rows if r["agrees"] is not None]
    n = max(len(rows), 1)
    return ModelTestReport(
        base_url=base_url, model=model, max_tokens=max_tokens,
        fact_accuracy=sum(r["fact"] for r in rows) / n,
        format_validity=sum(checked) / len(checked) if checked else None, format_checked=len(checked),
        tokens_per_second=statistics.median(speeds) if speeds else None,
        ttft_s=statistics.median(r["ttft_s"] for r in rows) if rows else 0.0,
        reference=(reference_name or "reference") if reference is not None else None,
        disagreements=None if reference is None else sum(not a for a in compared) + (len(rows) - len(compared)),
        rows=rows,
    )

__all__ = ["ServerError", "Question", "course_questions", "read_questions", "served_models", "chat",
           "ModelTestReport", "reference_from_report", "reference_from_hf", "run_model_test"]
