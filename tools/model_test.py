"""Test a served model: checks per question, fact accuracy, format validity, speed, agreement with a reference.

    python -m tools.model_test --base-url http://localhost:11434/v1 --model course-smollm2-135m-instruct-cpu   # Ollama (the name Lab 3.1.10 creates)
    python -m tools.model_test --base-url https://llm.internal/v1 --model smollm2-q4 \\
        --questions checks.jsonl --reference runs/f16/report.json --max-disagreements 0 \\
        --min-accuracy 0.8 --min-format-validity 1 --junit runs/model_test.xml          # in CI

Speaks the OpenAI-compatible chat API (Ollama's /v1, llama.cpp's server, vLLM), greedy and streamed.
Questions: the course's held-out test questions by default, or a JSONL file with one object a line:
{"prompt": "..." or [chat messages], "expected": "words the reply contains", "checks": [{"kind": "regex",
"pattern": "..."}, {"kind": "json"}, {"kind": "json_schema", "schema": {...}}, {"kind": "contains",
"value": "..."}], "id": optional, "island": optional (the course's JSON house format)}; "expected" or
"checks" or both. A prompt given as text is sent after the course's (empty) system turn, as the course
trains. --reference compares with an earlier JSON report or a Hugging Face model folder (its greedy
replies, computed here): a question disagrees when the reference's reply passes or fails it differently.

The API key (--api-key, else $OPENAI_API_KEY) is sent as "Authorization: Bearer"; HTTPS_PROXY/NO_PROXY
and SSL_CERT_FILE (or --ca-bundle) are honoured; a loopback server is reached without a proxy.
Writes report.json (after every answer: a run that stops early leaves a report marked partial) and
report.png into --out, and with --junit a JUnit XML file; prints a table. Exit codes: 0 done and every
gate passed, 1 a gate failed (stderr names it), 2 the server or an input failed (one line on stderr).
With --modelfile, first creates --model on an Ollama server from that Modelfile (its FROM GGUF is
uploaded, bounded by --upload-timeout rather than --timeout), with the `ollama` client.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

EXIT_GATE_FAILED = 1
EXIT_BELOW_THRESHOLD = EXIT_GATE_FAILED  # the name the first version used
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m tools.model_test", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="the OpenAI-compatible API root, e.g. http://localhost:11434/v1")
    parser.add_argument("--model", required=True, help="the served model's name")
    parser.add_argument("--questions", type=Path, help="JSONL of questions (default: the course's held-out test questions)")
    parser.add_argument("--limit", type=int, help="ask only this many questions, evenly spread across them")
    parser.add_argument("--max-tokens", type=int, default=32, help="reply length limit (default 32)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one reply (default 60)")
    parser.add_argument("--api-key", default=None, help="sent as 'Authorization: Bearer KEY' (default: $OPENAI_API_KEY, if set)")
    parser.add_argument("--ca-bundle", type=Path, help="PEM file of CA certificates to trust for an https server (default: SSL_CERT_FILE, else certifi's)")
    parser.add_argument("--reference", help="an earlier JSON report, or a Hugging Face model folder, to compare with")
    parser.add_argument("--min-accuracy", type=float, help="gate: exit 1 if fact accuracy (the contains checks) is below this (0-1)")
    parser.add_argument("--min-format-validity", type=float, help="gate: exit 1 if format validity (island, regex, json, json_schema) is below this (0-1)")
    parser.add_argument("--max-disagreements", type=int, help="gate: exit 1 if more questions than this pass/fail differently from --reference")
    parser.add_argument("--junit", type=Path, help="also write a JUnit XML file here (one testcase per question, and the gates)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "model_test", help="where report.json and report.png go")
    parser.add_argument("--modelfile", type=Path, help="create --model on the Ollama server from this Modelfile first")
    parser.add_argument("--upload-timeout", type=float, default=1800.0, help="seconds allowed for uploading the GGUF and creating the model on Ollama (default 1800)")
    parser.add_argument("--rows", type=int, default=20, help="rows of the table to print (the JSON report has all)")
    args = parser.parse_args(argv)
    for option in ("min_accuracy", "min_format_validity"):
        value = getattr(args, option)
        if value is not None and not 0 <= value <= 1:
            parser.error(f"--{option.replace('_', '-')} must be between 0 and 1, got {value}")
    if args.max_disagreements is not None and (args.reference is None or args.max_disagreements < 0):
        parser.error("--max-disagreements needs --reference and a count of 0 or more")
    for option in ("limit", "max_tokens", "timeout", "upload_timeout"):
        value = getattr(args, option)
        if value is not None and value <= 0:
            parser.error(f"--{option.replace('_', '-')} must be positive, got {value:g}")
    args.api_key = args.api_key or os.environ.get("OPENAI_API_KEY") or None
    return args


def _reference(args, questions):
    if args.reference is None:
        return None, None
    path = Path(args.reference)
    if path.is_dir() and (path / "config.json").is_file():
        from utils.served_model_client import reference_from_hf
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
        return reference_from_hf(model, tokenizer, questions, args.max_tokens), f"HF model {path.name}"
    if path.is_dir():
        raise ValueError(f"{path}: a reference folder must be a Hugging Face model folder (no config.json in it)")
    from utils.served_model_client import reference_from_report

    return reference_from_report(path), f"report {path.name}"


def _create_on_ollama(args):
    from utils.ollama_client import ollama_create_from_modelfile
    from utils.served_model_client import ServerError

    host = args.base_url.rstrip("/").removesuffix("/v1")
    try:
        ollama_create_from_modelfile(args.model, args.modelfile, host=host, timeout=args.upload_timeout)
    except ServerError as err:
        raise ServerError(f"creating {args.model!r} from {args.modelfile} (--upload-timeout {args.upload_timeout:g} s): {err}") from None


class _Saver:
    """Rewrites report.json after an answer, at most once a second (a long run would otherwise rewrite a large file
    per question); a run that stops writes its last state on the way out in any case."""

    def __init__(self, path: Path, every_s: float = 1.0):
        self.path, self.every_s, self.last = path, every_s, float("-inf")

    def __call__(self, report) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            report.save(self.path)
            self.last = now


def _fail(message: str) -> int:
    print(f"model_test: error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_ERROR


def _save_partial(args, partial) -> str:
    """Write what a stopped run answered (JSON, and JUnit if asked); the words that point the user to it."""
    from utils.model_report import write_junit

    try:
        path = partial.save(args.out / "report.json")
        if args.junit:
            write_junit(partial, args.junit)
    except OSError as err:
        return f"; the partial report could not be written ({err.strerror or err})"
    return f"; partial report ({partial.n} of {partial.n + len(partial.not_asked)} questions answered): {path}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import httpx

    from utils.model_report import check_gates, write_junit
    from utils.served_model_client import ServerError, course_questions, error_line, read_questions, run_model_test

    report_path = args.out / "report.json"
    try:
        questions = read_questions(args.questions, args.limit) if args.questions else course_questions(args.limit)
        if args.modelfile is not None:
            _create_on_ollama(args)
        reference, reference_name = _reference(args, questions)
        report = run_model_test(args.base_url, args.model, questions, args.max_tokens, args.timeout, reference, reference_name,
                                progress=sys.stderr.isatty(), api_key=args.api_key, ca_bundle=args.ca_bundle,
                                on_row=_Saver(report_path))
        json_path = report.save(report_path)
        gates = check_gates(report, args.min_accuracy, args.min_format_validity, args.max_disagreements)
        if args.junit:
            write_junit(report, args.junit, gates)
        report.plot(args.out / "report.png")
    except ServerError as err:
        partial = getattr(err, "partial", None)
        return _fail(f"{err}{_save_partial(args, partial) if partial is not None else ''}")
    except KeyboardInterrupt as err:
        partial = getattr(err, "partial", None)
        _fail(f"interrupted{_save_partial(args, partial) if partial is not None else ''}")
        return EXIT_INTERRUPTED
    except (ValueError, OSError) as err:  # bad input files, unreadable/unwritable paths (OSError's message names the file)
        return _fail(err if isinstance(err, ValueError) or err.filename is None else f"{err.filename}: {err.strerror or err}")
    except httpx.HTTPError as err:  # from the ollama client, outside the chat requests
        return _fail(f"request failed: {type(err).__name__}: {error_line(err)}")
    except Exception as err:  # noqa: BLE001 - a CI tool answers in one line; the type name says where to look
        return _fail(f"unexpected {type(err).__name__}: {error_line(err)}")
    print(report.table(args.rows))
    print(report.summary())
    print(f"report: {json_path} and {args.out / 'report.png'}" + (f"; JUnit: {args.junit}" if args.junit else ""))
    failed = [g for g in gates if not g.passed]
    for gate in gates:
        print(f"model_test: gate {'passed' if gate.passed else 'FAILED'}: {gate.message}", file=sys.stderr if not gate.passed else sys.stdout)
    return EXIT_GATE_FAILED if failed else 0


if __name__ == "__main__":
    import matplotlib

    matplotlib.use("Agg")
    sys.exit(main())
