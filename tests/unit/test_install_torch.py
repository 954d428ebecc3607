"""tools.install_torch: an importable torch is kept and pinned at its distribution version; none installs the CPU
wheel (from TORCH_INDEX_URL when set) and pins what was installed. No real pip run: subprocess is replaced."""

import subprocess
import sys

import pytest

import tools.install_torch as it


class FakeProcesses:
    """subprocess.run as pip and the torch probe answer it: torch at `version` (None: absent) until pip installs `install_gives`."""

    def __init__(self, version, install_gives=None):
        self.version, self.install_gives, self.calls = version, install_gives, []

    def __call__(self, cmd, **kwargs):
        self.calls.append(cmd)
        if cmd[1:3] == ["-m", "pip"]:
            self.version = self.install_gives
            return subprocess.CompletedProcess(cmd, 0, "", "")
        if self.version is None:
            return subprocess.CompletedProcess(cmd, 1, "", "ModuleNotFoundError: No module named 'torch'")
        return subprocess.CompletedProcess(cmd, 0, self.version + "\n", "")


def test_a_present_torch_is_kept_and_pinned_at_its_distribution_version(tmp_path, monkeypatch):
    fake = FakeProcesses("2.13.0")
    monkeypatch.setattr(it.subprocess, "run", fake)
    it.main(str(tmp_path / "c.txt"))
    assert (tmp_path / "c.txt").read_text() == "torch==2.13.0\n"
    assert not any(cmd[1:3] == ["-m", "pip"] for cmd in fake.calls)


@pytest.mark.parametrize("index", [None, "https://download.pytorch.org/whl/cpu"])
def test_no_torch_installs_the_cpu_pin_then_pins_what_landed(tmp_path, monkeypatch, index):
    fake = FakeProcesses(None, install_gives="2.13.0+cpu")
    monkeypatch.setattr(it.subprocess, "run", fake)
    if index:
        monkeypatch.setenv(it.INDEX_ENV, index)
    else:
        monkeypatch.delenv(it.INDEX_ENV, raising=False)
    it.main(str(tmp_path / "c.txt"))
    [pip] = [cmd for cmd in fake.calls if cmd[1:3] == ["-m", "pip"]]
    assert pip == [sys.executable, "-m", "pip", "install", it.CPU_TORCH] + (["--index-url", index] if index else [])
    assert (tmp_path / "c.txt").read_text() == "torch==2.13.0+cpu\n"


def test_the_probe_asks_the_distribution_not_torch_version(monkeypatch):
    fake = FakeProcesses("2.13.0")
    monkeypatch.setattr(it.subprocess, "run", fake)
    assert it.installed_torch_version() == "2.13.0"
    assert "m.version('torch')" in fake.calls[0][-1] and "__version__" not in fake.calls[0][-1]
