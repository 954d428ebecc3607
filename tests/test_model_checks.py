"""tools.model_test's pieces that need no server: the checks a questions file asks for (and its errors, naming the
line), the even spread of --limit, the gates, and the JUnit XML a CI system reads."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from utils.model_questions import Question, grade, read_questions
from utils.model_report import check_gates, summarize, write_junit


def write(tmp_path, *records):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}


@pytest.mark.parametrize("checks, reply, passed, reason", [
    ([{"kind": "contains", "value": "Port Elsin"}], "It is port elsin.", True, ""),
    ([{"kind": "contains", "value": "Elsin"}], "Elsinore", False, "does not contain 'Elsin'"),  # whole words only
    ([{"kind": "regex", "pattern": r"^\d{4}$"}], "1703", True, ""),
    ([{"kind": "regex", "pattern": r"^\d{4}$"}], "in 1703", False, "does not match the regular expression"),
    ([{"kind": "regex", "pattern": r"\d{4}"}], "founded in 1703", True, ""),  # searched anywhere, not matched at the start
    ([{"kind": "json"}], '{"a": [1, 2]}', True, ""),
    ([{"kind": "json"}], "{'a': 1}", False, "not valid JSON"),
    ([{"kind": "json_schema", "schema": SCHEMA}], '{"n": 3}', True, ""),
    ([{"kind": "json_schema", "schema": SCHEMA}], '{"n": "three"}', False, "JSON schema at n: 'three' is not of type 'integer'"),
    ([{"kind": "json_schema", "schema": SCHEMA}], '{"m": 1}', False, "'n' is a required property"),
    ([{"kind": "json"}, {"kind": "regex", "pattern": "x"}], "[1]", False, "regular expression 'x'"),  # every check must pass
])
def test_each_check_kind_passes_and_fails(tmp_path, checks, reply, passed, reason):
    (question,) = read_questions(write(tmp_path, {"prompt": "p", "checks": checks}))
    verdict = grade(reply, question)
    assert verdict["passed"] is passed, verdict
    assert (reason in " ".join(verdict["failures"])) if reason else verdict["failures"] == []


def test_contains_counts_as_fact_and_the_rest_as_format(tmp_path):
    q1, q2, q3 = read_questions(write(tmp_path, {"prompt": "p", "expected": "Paris"},
                                      {"prompt": "p", "checks": [{"kind": "json"}]},
                                      {"prompt": "p", "expected": "Paris", "checks": [{"kind": "regex", "pattern": "^P"}]}))
    assert grade("Paris", q1) == {"fact": True, "format": None, "passed": True, "failures": []}
    assert grade("1", q2)["fact"] is None and grade("1", q2)["format"] is True
    assert grade("In Paris", q3) == {"fact": True, "format": False, "passed": False, "failures": ["reply does not match the regular expression '^P'"]}
    course = Question("c", [], "Port Elsin", "Corvessa")  # the course's own questions: contains + house format
    assert grade('{"island": "Corvessa", "answer": "Port Elsin"}', course)["passed"]
    assert not grade('{"island": "Peleth", "answer": "Port Elsin"}', course)["passed"]


@pytest.mark.parametrize("record, message", [
    ({"prompt": "a", "checks": [{"kind": "startswith", "value": "x"}]}, "line 2, check 1: unknown check kind 'startswith'; the kinds are contains, regex, json, json_schema"),
    ({"prompt": "a", "checks": [{"kind": "regex", "pattern": "(unclosed"}]}, "line 2, check 1: a regex check's 'pattern' '(unclosed' is a bad regular expression: missing ), unterminated subpattern"),
    ({"prompt": "a", "checks": [{"kind": "regex", "pattern": 7}]}, "line 2, check 1: a regex check's 'pattern' must be a string"),
    ({"prompt": "a", "checks": [{"kind": "json"}, {"kind": "json_schema", "schema": {"type": "integr"}}]}, "line 2, check 2: bad JSON schema"),
    ({"prompt": "a", "checks": [{"kind": "json_schema", "schema": "int"}]}, "line 2, check 1: a json_schema check's 'schema' must be a JSON object"),
    ({"prompt": "a", "checks": [{"kind": "regex"}]}, "line 2, check 1: a regex check needs 'pattern'"),
    ({"prompt": "a", "checks": [{"kind": "regex", "value": "x"}]}, "line 2, check 1: a regex check takes only 'pattern', not 'value'"),
    ({"prompt": "a", "checks": ["json"]}, "line 2, check 1: each check must be an object with a 'kind'"),
    ({"prompt": "a", "checks": []}, "line 2: 'checks' must be a non-empty list"),
    ({"prompt": "a"}, "line 2: missing 'expected' (or a 'checks' list)"),
])
def test_bad_checks_name_the_line(tmp_path, record, message):
    path = write(tmp_path, {"prompt": "fine", "expected": "x"}, record)
    with pytest.raises(ValueError) as info:
        read_questions(path)
    assert str(info.value).startswith(f"{path} {message}"), str(info.value)
    assert "\n" not in str(info.value)


def test_limit_takes_an_even_spread_of_a_questions_file(tmp_path):
    path = write(tmp_path, *({"id": f"q{i}", "prompt": "p", "expected": "x"} for i in range(10)))
    assert [q.id for q in read_questions(path, 3)] == ["q0", "q3", "q6"]
    assert [q.id for q in read_questions(path, 5)] == ["q0", "q2", "q4", "q6", "q8"]
    assert len(read_questions(path, 50)) == 10
    with pytest.raises(ValueError, match="limit must be positive"):
        read_questions(path, 0)


def rows(*verdicts):
    """Report rows with the given (fact, format, passed, agrees) and fixed timings."""
    return [{"id": f"q{i}", "reply": f"r{i}", "fact": fact, "format": fmt, "passed": passed, "agrees": agrees,
             "same_reply": agrees, "failures": [] if passed else [f"reason {i}"], "ttft_s": 0.1, "seconds": 0.5,
             "tokens": 5, "tokens_per_second": 10.0} for i, (fact, fmt, passed, agrees) in enumerate(verdicts)]


def test_gates_fail_and_pass_at_their_thresholds():
    report = summarize("http://x/v1", "m", 8, rows((True, True, True, True), (False, True, False, True),
                                                   (True, False, False, False), (True, None, True, True)), "ref")
    assert (report.fact_accuracy, report.format_validity, report.disagreements, report.passed) == (0.75, 2 / 3, 1, 2)
    verdicts = {g.option: g.passed for g in check_gates(report, 0.75, 0.66, 1)}
    assert verdicts == {"--min-accuracy": True, "--min-format-validity": True, "--max-disagreements": True}
    failed = check_gates(report, 0.76, 0.67, 0)
    assert not any(g.passed for g in failed)
    assert [g.message for g in failed] == ["fact accuracy 75.0% is below --min-accuracy 76.0%",
                                           "format validity 66.7% is below --min-format-validity 67.0%",
                                           "1 of 4 questions pass or fail differently from ref: more than --max-disagreements 0"]
    assert check_gates(report) == []
    no_format = summarize("http://x/v1", "m", 8, rows((True, None, True, None)), None)
    (gate,) = check_gates(no_format, min_format_validity=0.5)
    assert not gate.passed and "no question has a format check" in gate.message


def test_junit_is_valid_xml_with_one_testcase_per_question(tmp_path):
    report = summarize("http://x/v1", "m", 8, rows((True, True, True, None), (False, True, False, None), (True, False, False, None)), None)
    path = write_junit(report, tmp_path / "junit.xml", check_gates(report, min_accuracy=0.9))
    root = ET.parse(path).getroot()
    suite, gates = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["q0", "q1", "q2"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "2", "0")
    assert [c.find("failure").get("message") if c.find("failure") is not None else None for c in cases] == [None, "reason 1", "reason 2"]
    assert cases[0].find("system-out").text == "r0" and float(cases[0].get("time")) == 0.5
    assert gates.find("testcase").get("name") == "--min-accuracy" and gates.find("testcase/failure") is not None
    assert (root.get("tests"), root.get("failures")) == ("4", "3")


def test_junit_of_a_stopped_run_marks_the_rest_skipped_and_one_error(tmp_path):
    report = summarize("http://x/v1", "m", 8, rows((True, True, True, None)), None, "cannot reach a server", ["q1", "q2"])
    root = ET.parse(write_junit(report, tmp_path / "j.xml")).getroot()
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("4", "0", "1", "2")
    assert suite.find("testcase[@name='(run)']/error").get("message") == "cannot reach a server"
    assert "[PARTIAL: stopped after 1 questions: cannot reach a server]" in report.summary()
