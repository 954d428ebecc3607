"""The `--check` pattern every generator in tools/ shares: compare what it would write with what is on disk.

Without --check a generator rewrites the files that differ; with --check it writes nothing and
exits 1 if any differs, which is how the tests (and CI) prove the shipped files are current.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.paths import REPO


def argument_parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report files that are out of date (no writes; exit 1 if any)")
    return parser


def update(target: Path, expected: str, check: bool, current: str | None = None) -> bool:
    """Write `expected` to `target` unless it is already there (or only report, under check); True if it differed.

    `current` is the file's text as the generator compares it (e.g. normalised JSON); by default its raw text.
    """
    if current is None and target.exists():
        current = target.read_text(encoding="utf-8")
    name = target.relative_to(REPO) if target.is_relative_to(REPO) else target
    if current == expected:
        print(f"up to date  {name}")
        return False
    if check:
        print(f"OUT OF DATE {name}")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(expected, encoding="utf-8")
        print(f"wrote       {name}")
    return True


def main_for(doc: str, expected_files, directory: Path, argv: list[str] | None = None) -> int:
    """The whole command of a generator whose output is `expected_files()` (name -> text) in `directory`."""
    args = argument_parser(doc).parse_args(argv)
    stale = [name for name, text in expected_files().items() if update(Path(directory) / name, text, args.check)]
    return 1 if args.check and stale else 0
