"""Extracting a zip of submissions (tools.grading.safe_zip): members that try to escape, links, zip bombs and
lying headers are refused naming the zip and the member, and a refused zip leaves nothing behind.

Fast: small zips written here; the walk through nested zips and its shared budget is in test_grading_discovery.py.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tools.grading import safe_zip
from tools.grading.safe_zip import DiscoveryError, extract_zip


def evil_zip(path: Path, member: str | zipfile.ZipInfo, data: bytes = b"{}") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("good_1_2_lab.ipynb", b"{}")
        z.writestr(member, data)
    return path


def test_a_good_zip_is_extracted_without_the_junk(tmp_path):
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("alice/lab.ipynb", b"{}")
        z.writestr("alice/empty/", b"")
        z.writestr("__MACOSX/alice/._lab.ipynb", b"junk")
        z.writestr("bob/.ipynb_checkpoints/lab-checkpoint.ipynb", b"{}")
    dest = tmp_path / "out"
    (dest / "stale").mkdir(parents=True)  # a second run replaces the folder
    assert extract_zip(archive, dest) == (4, 2)  # members read, bytes written (the junk skipped)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == ["alice", "alice/empty", "alice/lab.ipynb"]


@pytest.mark.parametrize("member", ["../escape.ipynb", "a/../../escape.ipynb", "/tmp/abs.ipynb", "C:\\x\\e.ipynb",
                                    "sub\\..\\..\\escape.ipynb"])
def test_zip_slip_is_refused_naming_zip_and_member(tmp_path, member):
    archive = evil_zip(tmp_path / "evil.zip", member)
    dest = tmp_path / "deep" / "work" / "evil"
    with pytest.raises(DiscoveryError) as err:
        extract_zip(archive, dest)
    assert str(err.value) == f"{archive}: member {member!r} points outside the extraction folder (absolute or '..')"
    assert not list(tmp_path.rglob("escape.ipynb")) and not dest.exists()


def test_symlink_member_is_refused(tmp_path):
    link = zipfile.ZipInfo("alice/lab.ipynb")
    link.create_system = 3
    link.external_attr = (0o120777 << 16)
    archive = evil_zip(tmp_path / "link.zip", link, b"/work/main/solutions/lab.ipynb")
    with pytest.raises(DiscoveryError, match=r"link\.zip: member 'alice/lab\.ipynb' is a symbolic link"):
        extract_zip(archive, tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_a_member_twice_is_refused(tmp_path):
    archive = tmp_path / "twice.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("alice/lab.ipynb", b"{}")
        z.writestr("alice\\lab.ipynb", b"{}")  # the same member once its Windows separator is read as a folder
    with pytest.raises(DiscoveryError, match=r"twice\.zip: member 'alice\\\\lab\.ipynb' appears twice"):
        extract_zip(archive, tmp_path / "w")


def test_zip_bombs_are_refused(tmp_path, monkeypatch):
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(6):
            z.writestr(f"s{i}_x.ipynb", b"{}")
    monkeypatch.setattr(safe_zip, "MAX_MEMBERS", 5)
    with pytest.raises(DiscoveryError, match=r"many\.zip: 6 members, more than the 5 allowed"):
        extract_zip(many, tmp_path / "w")
    assert extract_zip(many, tmp_path / "w", max_members=6) == (6, 12)  # what is left of a budget, given by the caller
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("s_x.ipynb", b"\0" * 3_000_000)  # a few kB compressed
    assert big.stat().st_size < 20_000
    monkeypatch.setattr(safe_zip, "MAX_BYTES", 1_000_000)
    with pytest.raises(DiscoveryError, match=r"big\.zip: 3000000 bytes uncompressed, more than the 1000000 allowed"):
        extract_zip(big, tmp_path / "w")
    # a header that lies about the size: zipfile stops at the declared size, the CRC fails, nothing is left
    data = bytearray(big.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(sig)
        data[at + offset: at + offset + 4] = (10).to_bytes(4, "little")
    liar = tmp_path / "liar.zip"
    liar.write_bytes(bytes(data))
    with pytest.raises(DiscoveryError, match=r"liar\.zip: member 's_x\.ipynb' cannot be extracted \(Bad CRC-32"):
        extract_zip(liar, tmp_path / "w" / "liar")
    assert not (tmp_path / "w" / "liar").exists()


def test_a_file_that_is_not_a_zip_is_named(tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DiscoveryError, match=r"broken\.zip: not a readable zip file"):
        extract_zip(tmp_path / "broken.zip", tmp_path / "w")
