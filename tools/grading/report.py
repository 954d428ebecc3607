"""The class summary an instructor reads first: what needs them (grader errors, submissions to review,
written answers to grade, late work), then scores per lab and which cells the class lost."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tools.grading.engine import STATUSES
from tools.grading.output import atomic_write


def cell_losses(rows: list[dict]) -> list[dict]:
    """Per lab and autograded cell: how many students were graded and the share who lost its points."""
    stats: dict[tuple[str, str], list] = {}
    for r in rows:
        if not r["lab"] or r["status"] in ("unrecognised", "grader-error"):
            continue
        for c in r["cells"]:
            if c["max_score"] > 0 and not c.get("manual"):
                entry = stats.setdefault((r["lab"], c["grade_id"]), [c["max_score"], 0, 0])
                entry[1] += 1
                entry[2] += c["score"] < c["max_score"]
    return [{"lab": lab, "grade_id": gid, "points": f"{pts:g}", "students": n, "lost_share": f"{lost / n:.2f}"}
            for (lab, gid), (pts, n, lost) in sorted(stats.items())]


def plot(root: Path, by_lab: dict[str, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labs = sorted(by_lab)
    fig, axes = plt.subplots(1, max(1, len(labs)), figsize=(4 * max(1, len(labs)), 3), squeeze=False)
    for ax, lab in zip(axes[0], labs):
        scores = [r["score"] for r in by_lab[lab]]
        top = max(r["max_score"] - r.get("manual_max", 0) for r in by_lab[lab]) or 1
        ax.hist(scores, bins=min(20, int(top) + 1), range=(0, top))
        ax.set_title(lab.split("-", 2)[1] if lab.count("-") >= 2 else lab)
        ax.set_xlabel(f"autograded score (of {top:g})")
        ax.set_ylabel("students")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    atomic_write(root / "score-distribution.png", png.getvalue())


def write_summary(root: Path, rows: list[dict], isolation: str) -> None:
    by_lab: dict[str, list[dict]] = {}
    for r in rows:
        if r["lab"] and r["status"] != "grader-error":
            by_lab.setdefault(r["lab"], []).append(r)
    losses = cell_losses(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["lab", "grade_id", "points", "students", "lost_share"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(losses)
    atomic_write(root / "cells.csv", buf.getvalue())
    plot(root, by_lab)

    lines = ["# Class grading summary", "", f"Kernels ran under: {isolation}.", ""]
    errors = [r for r in rows if r["status"] == "grader-error"]
    if errors:
        lines += [f"## Grader errors: {len(errors)} submission(s) NOT graded (not the students' fault; run again once fixed)", ""]
        lines += [f"- {r['student']} / {r['lab']}: {r['reason']}" for r in errors] + [""]
    review = [r for r in rows if r.get("review")]
    if review:
        lines += [f"## To review: {len(review)} submission(s) changed what grading relies on", ""]
        lines += [f"- {r['student']} / {r['lab']}: {'; '.join(r['review'])}" for r in review] + [""]
    waiting = [(r, c) for r in rows if r["status"] not in ("grader-error", "unrecognised") for c in r["cells"] if c.get("needs_manual_grade")]
    if waiting:
        lines += ["## Written answers to grade by hand", "",
                  f"{len(waiting)} written answer(s) in {len({r['student'] + r['lab'] for r, _ in waiting})} submission(s), "
                  f"{sum(c['max_score'] for _, c in waiting):g} points, need manual grading (formgrader on course/); "
                  "the scores below are autograded points only. Blank answers score 0 and are not listed.", ""]
    late = [r for r in rows if r.get("late")]
    if late:
        lines += [f"## Late: {len(late)} submission(s)", ""]
        lines += [f"- {r['student']} / {r['lab']}: " + (f"{r['minutes_late']:.0f} minutes late" if r.get("minutes_late") is not None else "marked late by the platform")
                  + (f", penalty {r['penalty']:g} points" if r.get("penalty") else "") for r in late] + [""]
    lines += ["## Scores", "", "![score distribution per lab](score-distribution.png)", "",
              "| lab | submissions | mean autograded score | of | statuses |", "|---|---|---|---|---|"]
    for lab in sorted(by_lab):
        rs = by_lab[lab]
        statuses = ", ".join(f"{s} {sum(r['status'] == s for r in rs)}" for s in STATUSES if any(r["status"] == s for r in rs))
        top = max(r["max_score"] - r.get("manual_max", 0) for r in rs)
        lines.append(f"| {lab} | {len(rs)} | {sum(r['score'] for r in rs) / len(rs):.1f} | {top:g} | {statuses} |")
    unknown = [r for r in rows if not r["lab"]]
    if unknown:
        lines += ["", f"{len(unknown)} file(s) were not graded (see grades.csv): " + ", ".join(f"{r['student']}: {r['file']}" for r in unknown)]
    lines += ["", "## What the class did not get", "",
              "Share of graded students who lost the points of each autograded cell (cells.csv):", "",
              "| lab | cell | points | students | lost their points |", "|---|---|---|---|---|"]
    lines += [f"| {c['lab']} | {c['grade_id']} | {c['points']} | {c['students']} | {float(c['lost_share']):.0%} |" for c in losses]
    atomic_write(root / "summary.md", "\n".join(lines) + "\n")
