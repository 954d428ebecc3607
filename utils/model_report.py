"""What `tools.model_test` measured, and what CI reads from it: the JSON report (written after every answer,
so a run that stops early still leaves one, marked partial with the reason), the gates that set the exit
code, and a JUnit XML file (one testcase per question) for CI systems.

Agreement with a reference is judged per question on pass/fail (does the reference's reply pass this
question's checks too?): the regression that matters after quantization is a question that used to pass
and now fails, not a reply worded differently. Replies that differ in text are counted separately.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from utils.evaluation import EvalResult


@dataclass(kw_only=True)
class ModelTestReport(EvalResult):
    """A served model scored on questions (an EvalResult, `fact_accuracy`/`format_validity`/`rows`, whose scores
    may be None where no question has that check) with the serving figures. `partial` says why the run stopped
    early (None: it finished); `not_asked` lists the questions it never reached."""

    base_url: str
    model: str
    max_tokens: int
    # fact_accuracy: over the questions with a contains check (None: no question has one)
    # format_validity: over the questions with a format check (island, regex, json, json_schema)
    format_checked: int
    tokens_per_second: float | None  # median decoding speed over the questions
    ttft_s: float  # median time to first token
    reference: str | None  # what the replies were compared with
    disagreements: int | None  # questions whose pass/fail differs from the reference's (or that it did not answer)
    reply_differences: int | None = None  # questions whose reply text differs from the reference's
    passed: int = 0  # questions that passed every check
    partial: str | None = None
    not_asked: list[str] = field(default_factory=list)

    def summary(self) -> str:
        fact = "n/a" if self.fact_accuracy is None else f"{self.fact_accuracy:.1%}"
        fmt = "n/a" if self.format_validity is None else f"{self.format_validity:.1%}"
        speed = "n/a" if self.tokens_per_second is None else f"{self.tokens_per_second:.1f} tokens/s"
        ref = "" if self.reference is None else (
            f", {self.reply_differences}/{self.n} replies differ from {self.reference}"
            f" ({self.disagreements} pass/fail disagreements)")
        stop = "" if self.partial is None else f" [PARTIAL: stopped after {self.n} questions: {self.partial}]"
        return (f"{self.model} @ {self.base_url}: {self.passed}/{self.n} passed, fact accuracy {fact}, format validity {fmt} "
                f"(n={self.n}), decoding {speed}, first token {self.ttft_s * 1000:.0f} ms (medians){ref}{stop}")

    def to_json(self) -> dict:
        report = asdict(self)
        report["rows"] = report.pop("rows")  # the summary figures first, then one row per question
        return report

    def save(self, path: str | Path) -> Path:
        """Write the JSON report; atomically, so a reader (or a run killed mid-write) never sees half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    def table(self, max_rows: int | None = None, width: int = 48) -> str:
        """One line per question: id, fact, format, reply equal to the reference's, speed, reply."""
        def cut(text, n):
            text = " ".join(str(text).split())
            return text if len(text) <= n else text[: n - 1] + "…"

        def mark(value, yes="ok", no="NO"):
            return "-" if value is None else (yes if value else no)

        header = f"{'id':28} {'fact':4} {'fmt':4} {'ref':4} {'ttft ms':>7} {'tok/s':>6}  reply"
        lines = [header, "-" * len(header)]
        for row in self.rows[:max_rows]:
            tps = "-" if row["tokens_per_second"] is None else f"{row['tokens_per_second']:.1f}"
            lines.append(f"{cut(row['id'], 28):28} {mark(row['fact']):4} {mark(row['format']):4} {mark(row.get('same_reply'), '=', 'DIFF'):4} "
                         f"{row['ttft_s'] * 1000:7.0f} {tps:>6}  {cut(row['reply'], width)}")
        if max_rows is not None and self.n > max_rows:
            lines.append(f"... {self.n - max_rows} more rows in the JSON report")
        return "\n".join(lines)

    def plot(self, path: str | Path | None = None):
        """Scores next to the reference's, and time to first token / decoding speed per question."""
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        labels, values = [], []
        for label, value in (("fact accuracy", self.fact_accuracy), ("format validity", self.format_validity)):
            if value is not None:
                labels.append(label)
                values.append(value)
        if self.disagreements is not None:
            labels.append(f"agrees with {self.reference}"[:28])
            values.append(1 - self.disagreements / max(self.n, 1))
        axes[0].bar(labels, values, color=["tab:blue", "tab:green", "tab:gray"][: len(values)])
        axes[0].set_ylim(0, 1.05)
        axes[0].set_title(f"{self.model}: {self.n} questions" + (" (partial)" if self.partial else ""))
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


def summarize(base_url: str, model: str, max_tokens: int, rows: list[dict], reference_name: str | None,
              partial: str | None = None, not_asked: list[str] | None = None) -> ModelTestReport:
    """The report of the rows so far (see serving.run_model_test for the row fields)."""
    facts = [r["fact"] for r in rows if r["fact"] is not None]
    checked = [r["format"] for r in rows if r["format"] is not None]
    speeds = [r["tokens_per_second"] for r in rows if r["tokens_per_second"] is not None]
    with_ref = reference_name is not None
    return ModelTestReport(
        base_url=base_url, model=model, max_tokens=max_tokens,
        fact_accuracy=sum(facts) / len(facts) if facts else None,
        format_validity=sum(checked) / len(checked) if checked else None, format_checked=len(checked),
        tokens_per_second=statistics.median(speeds) if speeds else None,
        ttft_s=statistics.median(r["ttft_s"] for r in rows) if rows else 0.0,
        reference=reference_name,
        disagreements=sum(r["agrees"] is not True for r in rows) if with_ref else None,
        reply_differences=sum(r["same_reply"] is not True for r in rows) if with_ref else None,
        passed=sum(r["passed"] for r in rows), partial=partial, not_asked=list(not_asked or []), rows=rows)


def reference_from_report(path: str | Path) -> dict[str, str]:
    """id -> reply from an earlier JSON report of this command (its pass/fail is judged again with today's checks)."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        return {str(row["id"]): row["reply"] for row in report["rows"]}
    except OSError as err:
        raise ValueError(f"{path}: cannot read the reference report ({err.strerror or err})") from err
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a model_test JSON report (needs rows with 'id' and 'reply'; {err})") from err


# ---------------------------------------------------------------- gates and JUnit

@dataclass(frozen=True)
class Gate:
    option: str  # the command-line option that set it
    passed: bool
    message: str


def check_gates(report: ModelTestReport, min_accuracy: float | None = None, min_format_validity: float | None = None,
                max_disagreements: int | None = None) -> list[Gate]:
    """Each gate that was asked for, judged on a finished report."""
    gates = []
    for option, value, limit, what in (("--min-accuracy", report.fact_accuracy, min_accuracy, "fact accuracy"),
                                       ("--min-format-validity", report.format_validity, min_format_validity, "format validity")):
        if limit is None:
            continue
        if value is None:
            kind = "a contains check ('expected')" if option == "--min-accuracy" else "a format check"
            gates.append(Gate(option, False, f"{option} {limit:.1%} cannot be judged: no question has {kind}"))
        else:
            ok = value >= limit
            gates.append(Gate(option, ok, f"{what} {value:.1%} is {'at or above' if ok else 'below'} {option} {limit:.1%}"))
    if max_disagreements is not None:
        ok = report.disagreements is not None and report.disagreements <= max_disagreements
        gates.append(Gate("--max-disagreements", ok, f"{report.disagreements} of {report.n} questions pass or fail differently from "
                                                      f"{report.reference}: {'within' if ok else 'more than'} --max-disagreements {max_disagreements}"))
    return gates


def write_junit(report: ModelTestReport, path: str | Path, gates: list[Gate] = ()) -> Path:
    """JUnit XML: a testsuite with one testcase per question (a failure element gives the reasons), the
    questions a stopped run never asked as skipped plus one error naming why it stopped, and a testsuite of gates."""
    import xml.etree.ElementTree as ET

    classname = f"model_test.{report.model}"
    root = ET.Element("testsuites", name="model_test")
    suite = ET.SubElement(root, "testsuite", name=f"{report.model} @ {report.base_url}")
    props = ET.SubElement(suite, "properties")
    for key in ("fact_accuracy", "format_validity", "tokens_per_second", "ttft_s", "reference", "disagreements", "partial"):
        ET.SubElement(props, "property", name=key, value=str(getattr(report, key)))
    failures = errors = skipped = 0
    for row in report.rows:
        case = ET.SubElement(suite, "testcase", classname=classname, name=row["id"], time=f"{row['seconds']:.3f}")
        if not row["passed"]:
            failures += 1
            failure = ET.SubElement(case, "failure", message="; ".join(row["failures"])[:500], type="check")
            failure.text = "\n".join(row["failures"]) + f"\nreply: {row['reply']}"
        ET.SubElement(case, "system-out").text = row["reply"]
    if report.partial is not None:
        for qid in report.not_asked:
            case = ET.SubElement(suite, "testcase", classname=classname, name=qid, time="0")
            ET.SubElement(case, "skipped", message=f"not asked: the run stopped ({report.partial})")
            skipped += 1
        case = ET.SubElement(suite, "testcase", classname=classname, name="(run)", time="0")
        ET.SubElement(case, "error", message=report.partial, type="stopped")
        errors += 1
    seconds = sum(r["seconds"] for r in report.rows)
    suite.attrib.update(tests=str(len(suite.findall("testcase"))), failures=str(failures), errors=str(errors),
                        skipped=str(skipped), time=f"{seconds:.3f}")
    total_tests, total_failures = len(suite.findall("testcase")), failures
    if gates:
        gate_suite = ET.SubElement(root, "testsuite", name=f"{report.model} gates", tests=str(len(gates)),
                                   failures=str(sum(not g.passed for g in gates)), errors="0", skipped="0", time="0")
        for gate in gates:
            case = ET.SubElement(gate_suite, "testcase", classname=f"{classname}.gates", name=gate.option, time="0")
            if not gate.passed:
                ET.SubElement(case, "failure", message=gate.message, type="gate")
        total_tests += len(gates)
        total_failures += sum(not g.passed for g in gates)
    root.attrib.update(tests=str(total_tests), failures=str(total_failures), errors=str(errors), time=f"{seconds:.3f}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
