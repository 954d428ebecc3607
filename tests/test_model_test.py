"""`python -m tools.model_test` against a real llama.cpp server (llama-cpp-python's, on loopback, on a free
port, started and stopped here), and every failure it must report in one line with exit code 2."""

from __future__ import annotations

import json

import pytest

from deploy_fixtures import course_gguf
from model_test_helpers import assert_one_line_error, model_test, stub_servers
from utils.llama_cpp_engine import free_port, serve_gguf
from utils.served_model_client import ServerError, course_questions, read_questions, run_model_test

pytestmark = pytest.mark.deploy  # llama.cpp, Go's template engine, the GGUF converter: `make deploy-setup`

ALIAS = "smollm2-course"


@pytest.fixture(scope="module")
def server():
    with serve_gguf(course_gguf("f16"), alias=ALIAS) as base_url:
        yield base_url


# ---------------------------------------------------------------- against llama.cpp's server

def test_command_reports_scores_speed_and_files(server, tmp_path):
    code, out, err = model_test("--base-url", server, "--model", ALIAS, "--limit", 4, "--max-tokens", 12, "--out", tmp_path)
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "report.png").stat().st_size > 1000
    assert report["model"] == ALIAS and report["base_url"] == server and len(report["rows"]) == 4
    expected_ids = [q.id for q in course_questions(4)]
    assert [r["id"] for r in report["rows"]] == expected_ids
    for row in report["rows"]:
        assert row["reply"] and 0 < row["ttft_s"] <= row["seconds"] and 1 <= row["tokens"] <= 12
    assert report["fact_accuracy"] == sum(r["fact"] for r in report["rows"]) / 4
    assert report["format_checked"] == 4 and report["tokens_per_second"] > 0
    assert report["reference"] is None and report["disagreements"] is None
    assert "fact accuracy" in out and ALIAS in out and "report.json" in out


def test_replies_are_greedy_and_match_llama_cpp_in_process(server):
    """The served replies are the model's own greedy continuation of the course's chat prompt."""
    from utils.llama_cpp_engine import load_gguf
    from utils.models import load_tokenizer
    from utils.profiles import SMOLLM2

    questions = course_questions(2)
    report = run_model_test(server, ALIAS, questions, max_tokens=10)
    tokenizer = load_tokenizer(SMOLLM2)
    llm = load_gguf(course_gguf("f16"))
    for q, row in zip(questions, report.rows):
        text = tokenizer.apply_chat_template(q.messages, tokenize=False, add_generation_prompt=True)
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        out = []
        for token in llm.generate(ids, top_k=1, temp=0.0, reset=True):
            if token == llm.token_eos() or len(out) == 10:
                break
            out.append(token)
        assert llm.detokenize(out).decode().strip() == row["reply"], q.id


def test_reference_report_agreement_and_threshold(server, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    code, _, err = model_test("--base-url", server, "--model", ALIAS, "--limit", 3, "--max-tokens", 8, "--out", first)
    assert code == 0, err
    # greedy decoding on the same server: the same replies, so no disagreement with the earlier report;
    # the base model does not know the invented facts, so a 100% threshold fails with exit code 1
    code, out, err = model_test("--base-url", server, "--model", ALIAS, "--limit", 3, "--max-tokens", 8, "--out", second,
                                "--reference", first / "report.json", "--min-accuracy", 1.0)
    report = json.loads((second / "report.json").read_text())
    assert report["disagreements"] == 0 and all(r["agrees"] for r in report["rows"]), report["rows"]
    assert report["fact_accuracy"] < 1.0
    assert code == 1 and "below --min-accuracy" in err and "Traceback" not in err


def test_disagreements_are_counted_per_question(server):
    """A question disagrees when the reference's reply passes or fails it differently; replies worded differently
    with the same verdict are counted apart; a question the reference did not answer counts as a disagreement."""
    questions = course_questions(3)
    first = run_model_test(server, ALIAS, questions, max_tokens=6)
    row = first.rows[0]
    q0 = questions[0]  # "" fails its checks; the house-format object with the right answer passes them all
    flipped = "" if row["passed"] else json.dumps({"island": q0.island, "answer": q0.answer})
    same_verdict = "zzz " + row["reply"] if not row["passed"] else row["reply"] + " (again)"
    reference = {questions[0].id: flipped, questions[1].id: same_verdict if not first.rows[1]["passed"] else first.rows[1]["reply"]}
    report = run_model_test(server, ALIAS, questions, max_tokens=6, reference=reference, reference_name="made-up")
    assert [r["agrees"] for r in report.rows] == [False, True, None]
    assert report.disagreements == 2
    assert [r["same_reply"] for r in report.rows][0] is False and report.rows[2]["same_reply"] is None
    assert "made-up" in report.summary() and "2 pass/fail disagreements" in report.summary()


def test_own_questions_from_jsonl(server, tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        json.dumps({"id": "q1", "prompt": "What is the capital of France?", "expected": "Paris"}) + "\n\n"
        + json.dumps({"prompt": [{"role": "user", "content": "Say the word banana."}], "expected": "banana"}) + "\n")
    code, out, err = model_test("--base-url", server, "--model", ALIAS, "--questions", path, "--max-tokens", 8, "--out", tmp_path / "r")
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [r["id"] for r in report["rows"]] == ["q1", "line-3"]
    assert report["format_validity"] is None and report["format_checked"] == 0  # no island: no format check


def test_unknown_model(server, tmp_path):
    code, _, err = model_test("--base-url", server, "--model", "no-such-model", "--limit", 1, "--out", tmp_path)
    assert_one_line_error(code, err, "does not serve model 'no-such-model'", ALIAS)


# ---------------------------------------------------------------- failures: one line, exit code 2

def test_unreachable_server(tmp_path):
    port = free_port()  # nothing listens on it
    code, _, err = model_test("--base-url", f"http://127.0.0.1:{port}/v1", "--model", "m", "--limit", 1, "--out", tmp_path)
    assert_one_line_error(code, err, "cannot reach a server", f"127.0.0.1:{port}")


@pytest.fixture
def stub():
    with stub_servers() as start:
        yield start


@pytest.mark.parametrize("mode", ["malformed", "bad-event"])
def test_malformed_reply(stub, tmp_path, mode):
    code, _, err = model_test("--base-url", stub(mode), "--model", "stub", "--limit", 1, "--out", tmp_path)
    assert_one_line_error(code, err, "malformed reply")


def test_timeout(stub, tmp_path):
    code, _, err = model_test("--base-url", stub("slow"), "--model", "stub", "--limit", 1, "--timeout", 0.5, "--out", tmp_path)
    assert_one_line_error(code, err, "within 0.5 s")


def test_bad_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "a", "expected": "b"}\n{"prompt": "c", "expected": \n')
    code, _, err = model_test("--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--questions", path, "--out", tmp_path)
    assert_one_line_error(code, err, f"{path} line 2", "not valid JSON")


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "a"}', "line 1: missing 'expected'"),
    ('["a", "b"]', "line 1: expected a JSON object"),
    ('{"prompt": [{"role": "user"}], "expected": "b"}', "line 1: 'prompt' must be"),
    ('{"prompt": "a", "expected": ""}', "line 1: 'expected' must be a non-empty string"),
])
def test_question_records_are_checked(tmp_path, line, message):
    path = tmp_path / "q.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        read_questions(path)


def test_missing_question_file(tmp_path):
    code, _, err = model_test("--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--questions", tmp_path / "none.jsonl", "--out", tmp_path)
    assert_one_line_error(code, err, "none.jsonl", "cannot read")


def test_server_errors_are_one_line_in_the_library_too():
    with pytest.raises(ServerError, match="cannot reach") as info:
        run_model_test(f"http://127.0.0.1:{free_port()}/v1", "m", course_questions(1), timeout=2)
    assert "\n" not in str(info.value)
