"""Build a directory beside its final place and swap it in whole, so a reader never sees half of one.

The prepared SmolLM2 model and the student edition are both written this way: a run killed halfway leaves the
old directory (or none), never a partial one that a later run would take as finished.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def staged_directory(target: str | Path) -> Iterator[Path]:
    """Yield an empty directory next to `target`; when the block succeeds it replaces `target`, else it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
