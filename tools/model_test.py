"""Test a served model: held-out fact accuracy, format validity, speed, and agreement with a reference.

    python -m tools.model_test --base-url http://localhost:11434/v1 --model course-smollm2     # Ollama
    python -m tools.model_test --base-url http://127.0.0.1:8080/v1 --model smollm2 \\
        --questions my_questions.jsonl --reference runs/last_report.json --min-accuracy 0.8   # in CI

Speaks the OpenAI-compatible chat API (Ollama's /v1, llama.cpp's server, vLLM), greedy and streamed.
Questions: the course's held-out test questions by default, or a JSONL file with one object a line,
{"prompt": "..." or [chat messages], "expected": "answer text", "id": optional, "island": optional
(checks the course's JSON house format)}. A prompt given as text is sent after the course's (empty)
system turn, as the course trains. --reference compares replies with an earlier JSON report or with a
Hugging Face model folder (its greedy replies, computed here).

Writes report.json and report.png into --out, prints a table. Exit codes: 0 done, 1 fact accuracy
below --min-accuracy, 2 the server or an input failed (one line on stderr saying which).
With --modelfile, first creates --model on an Ollama server from that Modelfile (its FROM GGUF is
uploaded): the only step that needs Ollama's own API, done with the `ollama` client.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_BELOW_THRESHOLD = 1
EXIT_ERROR = 2


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m tools.model_test", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="the OpenAI-compatible API root, e.g. http://localhost:11434/v1")
    parser.add_argument("--model", required=True, help="the served model's name")
    parser.add_argument("--questions", type=Path, help="JSONL of questions (default: the course's held-out test questions)")
    parser.add_argument("--limit", type=int, help="ask only this many course questions (evenly spread)")
    parser.add_argument("--max-tokens", type=int, default=32, help="reply length limit (default 32)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one reply (default 60)")
    parser.add_argument("--reference", help="an earlier JSON report, or a Hugging Face model folder, to compare replies with")
    parser.add_argument("--min-accuracy", type=float, help="exit 1 if fact accuracy is below this (0-1)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "model_test", help="where report.json and report.png go")
    parser.add_argument("--modelfile", type=Path, help="create --model on the Ollama server from this Modelfile first")
    parser.add_argument("--rows", type=int, default=20, help="rows of the table to print (the JSON report has all)")
    args = parser.parse_args(argv)
    if args.min_accuracy is not None and not 0 <= args.min_accuracy <= 1:
        parser.error(f"--min-accuracy must be between 0 and 1, got {args.min_accuracy}")
    return args


def _reference(args, questions):
    if args.reference is None:
        return None, None
    path = Path(args.reference)
    if path.is_dir() and (path / "config.json").is_file():
        from utils.serving import reference_from_hf
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
        return reference_from_hf(model, tokenizer, questions, args.max_tokens), f"HF model {path.name}"
    if path.is_dir():
        raise ValueError(f"{path}: a reference folder must be a Hugging Face model folder (no config.json in it)")
    from utils.serving import reference_from_report

    return reference_from_report(path), f"report {path.name}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from utils.serving import ServerError, course_questions, read_questions, run_model_test

    try:
        questions = read_questions(args.questions) if args.questions else course_questions(args.limit)
        if args.questions and args.limit:
            questions = questions[: args.limit]
        if args.modelfile is not None:
            from utils.deployment import ollama_create_from_modelfile

            host = args.base_url.rstrip("/").removesuffix("/v1")
            ollama_create_from_modelfile(args.model, args.modelfile, host=host, timeout=args.timeout)
        reference, reference_name = _reference(args, questions)
        report = run_model_test(args.base_url, args.model, questions, args.max_tokens, args.timeout, reference, reference_name, progress=sys.stderr.isatty())
    except (ServerError, ValueError, FileNotFoundError) as err:
        print(f"model_test: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    json_path = report.save(args.out / "report.json")
    report.plot(args.out / "report.png")
    print(report.table(args.rows))
    print(report.summary())
    print(f"report: {json_path} and {args.out / 'report.png'}")
    if args.min_accuracy is not None and report.fact_accuracy < args.min_accuracy:
        print(f"model_test: fact accuracy {report.fact_accuracy:.1%} is below --min-accuracy {args.min_accuracy:.1%}", file=sys.stderr)
        return EXIT_BELOW_THRESHOLD
    return 0


if __name__ == "__main__":
    import matplotlib

    matplotlib.use("Agg")
    sys.exit(main())
