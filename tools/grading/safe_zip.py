"""Extracting a downloaded zip of submissions safely: nothing written outside its folder, no links, no zip bombs.

The limits below hold for all the zips of one `discovery.discover()` together (nested ones included); its
walk passes what is left of them to each `extract_zip`, and the error messages give what was left.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

MAX_MEMBERS = 10_000  # a class of 500 students x a few files is far below
MAX_BYTES = 2 << 30  # 2 GiB uncompressed: notebooks are small, a zip bomb is not
MAX_ZIP_DEPTH = 3  # zips inside zips inside zips, no deeper
SKIP_PARTS = {"__MACOSX", ".ipynb_checkpoints"}  # a Mac's resource forks and Jupyter's autosaves: never submissions


class DiscoveryError(ValueError):
    """A submissions folder or zip that cannot be read safely; the message names the file and member."""


def extract_zip(path: Path, dest: Path, max_members: int | None = None, max_bytes: int | None = None) -> tuple[int, int]:
    """Extract `path` into a fresh `dest` and return (members, bytes) written; or raise DiscoveryError
    naming the zip and the member, leaving nothing.

    Refused: absolute paths, drive letters and `..` members, symbolic links, encrypted or corrupt members,
    more than MAX_MEMBERS members or MAX_BYTES uncompressed. The declared sizes bound what is written:
    zipfile stops a member at its declared size and a member that lies then fails its CRC check.
    `__MACOSX/` and `.ipynb_checkpoints` members are skipped."""
    max_members = MAX_MEMBERS if max_members is None else max_members
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DiscoveryError(f"{path}: not a readable zip file ({e})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_members:
            raise DiscoveryError(f"{path}: {len(infos)} members, more than the {max_members} allowed")
        wanted, seen = [], set()
        for info in infos:
            name = info.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in parts:
                raise DiscoveryError(f"{path}: member {info.filename!r} points outside the extraction folder (absolute or '..')")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DiscoveryError(f"{path}: member {info.filename!r} is a symbolic link")
            if any(p in SKIP_PARTS for p in parts) or not parts:
                continue
            if "/".join(parts) in seen:
                raise DiscoveryError(f"{path}: member {info.filename!r} appears twice")
            seen.add("/".join(parts))
            wanted.append((info, parts))
        size = sum(info.file_size for info, _ in wanted)
        if size > max_bytes:
            raise DiscoveryError(f"{path}: {size} bytes uncompressed, more than the {max_bytes} allowed")
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        try:
            for info, parts in wanted:
                target = dest.joinpath(*parts)
                try:
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                except (zipfile.BadZipFile, RuntimeError, OSError, NotImplementedError, EOFError) as e:
                    raise DiscoveryError(f"{path}: member {info.filename!r} cannot be extracted ({e})") from None
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    return len(infos), size
