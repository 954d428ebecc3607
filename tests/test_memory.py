import resource
import sys

import pytest
import torch
from torch import nn

from utils.memory import (
    GiB,
    MiB,
    MemoryMeasurementError,
    UNITS_NOTE,
    format_bytes,
    measure_peak_memory,
    model_footprint_bytes,
)

try:
    from tests import memory_test_targets
except ImportError:  # pytest run from elsewhere, with tests/ itself on sys.path
    import memory_test_targets

REGISTRY = memory_test_targets.__name__


def measure(target, kwargs=None, **options):
    """measure_peak_memory on this file's own registry of probe targets."""
    return measure_peak_memory(target, kwargs, registry=REGISTRY, **options)


def test_allocation_shows_up_in_delta():
    report = measure("allocate", {"mib": 200})
    # 200 MiB = 210 MB; a baseline taken after the call, or KiB/bytes confusion, lands far outside.
    assert 150e6 < report.delta_bytes < 400e6, report.summary()
    assert report.delta_bytes == report.peak_bytes - report.baseline_bytes
    assert report.result == {"allocated_bytes": 200 * MiB}
    assert report.seconds > 0
    assert report.target == "allocate"


def test_noop_adds_almost_nothing():
    report = measure("noop")
    assert 0 <= report.delta_bytes < 30e6, report.summary()
    # A bare interpreter plus `utils` is tens of MiB, not bytes (unit error) and not GiB.
    assert 5 * MiB < report.baseline_bytes < 500 * MiB, report.summary()


def test_parent_peak_does_not_leak_into_worker_baseline():
    # On Linux ru_maxrss survives exec: a worker started from a process that once held a lot
    # would report that as its own baseline. The worker must measure only itself.
    block = bytearray(400 * MiB)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    parent_peak = ru if sys.platform == "darwin" else ru * 1024
    del block
    report = measure("noop")
    assert report.baseline_bytes < parent_peak - 300 * MiB, report.summary()


def test_kwargs_and_result_round_trip_and_stdout_does_not_confuse_the_report(capsys):
    report = measure("echo", {"a": 1, "b": [1, 2], "c": "x"})
    assert report.result == {"kwargs": {"a": 1, "b": [1, 2], "c": "x"}}
    report = measure("chatty")
    assert report.result == {"ok": True}
    assert "step 1 of 2" in capsys.readouterr().out  # the target's prints are passed through


def test_failure_raises_in_parent_with_target_and_traceback():
    target = "fail"
    with pytest.raises(MemoryMeasurementError) as info:
        measure(target, {"message": "distinctive failure 4711"})
    text = str(info.value)
    assert target in text
    assert "distinctive failure 4711" in text
    assert "ValueError" in text and "Traceback" in text


def test_import_error_and_unserialisable_result_raise():
    with pytest.raises(MemoryMeasurementError, match="no_such_module_xyz"):
        measure_peak_memory("run", registry="no_such_module_xyz")
    with pytest.raises(MemoryMeasurementError, match="not_serialisable"):
        measure("not_serialisable")


def test_bad_target_and_kwargs_fail_fast():
    with pytest.raises(MemoryMeasurementError, match="no measurable target 'nope'.*noop"):
        measure("nope")
    with pytest.raises(TypeError, match="JSON"):
        measure("echo", {"x": object()})


def test_targets_importable_in_parent_are_importable_in_worker(tmp_path, monkeypatch):
    # Only reachable through the parent's sys.path (not the working directory): the worker
    # must inherit sys.path, or notebooks could not measure their own helpers.
    package_dir = tmp_path / "only_on_sys_path"
    package_dir.mkdir()
    (package_dir / "memtarget_4711.py").write_text("def run(n):\n    return {'twice': 2 * n}\n\n\nTARGETS = {'run': run}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.syspath_prepend(str(package_dir))
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert measure_peak_memory("run", {"n": 21}, registry="memtarget_4711").result == {"twice": 42}


def test_timeout_names_the_target():
    with pytest.raises(TimeoutError, match="sleep"):
        measure("sleep", {"seconds": 60}, timeout=1)


class Tied(nn.Module):
    def __init__(self, share: str):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        if share == "same_parameter":  # how transformers ties weights
            self.head.weight = self.embed.weight
        elif share == "same_storage":  # a distinct Parameter over the same memory
            self.head.weight = nn.Parameter(self.embed.weight.data)
        self.register_buffer("scale", torch.ones(3))


@pytest.mark.parametrize("share", ["same_parameter", "same_storage"])
def test_footprint_counts_a_tied_weight_once(share):
    model = Tied(share)
    assert model_footprint_bytes(model) == 10 * 4 * 4 + 3 * 4


def test_footprint_of_untied_model_matches_get_memory_footprint_formula():
    model = Tied("none")
    model.half()
    expected = sum(t.nelement() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert model_footprint_bytes(model) == expected == (40 + 40 + 3) * 2


def test_footprint_counts_meta_tensors_by_size():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    assert model_footprint_bytes(model) == 2 * (64 + 8) * 4


def test_format_bytes_is_binary():
    assert format_bytes(200 * MiB) == "200.0 MiB"
    assert format_bytes(GiB) == "1.00 GiB"
    assert format_bytes(10**9) == "953.7 MiB"  # a decimal GB is less than a GiB
    assert "GiB" in UNITS_NOTE and "10**9" in UNITS_NOTE


# ---------------------------------------------------------------- the notebook's P reaches the worker


def _profile_registry():
    try:
        from tests import profile_targets
    except ImportError:  # pytest run from elsewhere, with tests/ itself on sys.path
        import profile_targets
    return profile_targets.__name__


def test_a_profile_crosses_to_the_worker_whole(monkeypatch):
    """P.with_(...) and the lab's sizes arrive as they are; the worker's environment cannot change them."""
    from utils.profiles import OVERRIDES_ENV, get_profile

    P = get_profile("grade", lab="3.1.3").with_(max_steps=3, learning_rate=1.5e-3, alphas=(0, 15))
    monkeypatch.setenv("COURSE_PROFILE", "cpu")  # the worker inherits this; it must not matter
    monkeypatch.setenv(OVERRIDES_ENV, '{"max_steps": 9}')
    report = measure_peak_memory("echo_profile", {"profile": P, "lab": "3.1.3"}, registry=_profile_registry())
    assert report.result["is_profile"] and report.result["profile"] == P.to_dict()
    assert report.result["profile"]["lab_sizes"]["alphas"] == [0, 15]


def test_a_profile_inside_other_arguments_and_a_bad_one():
    from utils.memory_worker import PROFILE_KEY
    from utils.profiles import PROFILES

    with pytest.raises(TypeError, match="JSON-serialisable"):
        measure_peak_memory("echo_profile", {"profile": object()}, registry=_profile_registry())
    with pytest.raises(MemoryMeasurementError, match="not a profile: unknown fields"):
        measure_peak_memory("echo_profile", {"profile": {PROFILE_KEY: {**PROFILES["grade"].to_dict(), "colour": 1}}},
                            registry=_profile_registry())


@pytest.mark.slow
def test_a_notebooks_with_reaches_the_course_memory_worker():
    """Lab 3.1.2's measured run with the notebook's own changes: one step (grade measures none) at its learning rate."""
    from utils.profiles import get_profile

    P = get_profile("grade", lab="3.1.2")
    assert P.memory_steps == 0, "grade measures no memory for Lab 3.1.2: the change below is what must arrive"
    changed = P.with_(memory_steps=1, learning_rate=1.5e-3)
    report = measure_peak_memory("lora_vs_dora", dict(profile=changed, use_dora=False))
    assert report.result["steps"] == 1, report.result
    assert report.result["profile"] == changed.to_dict()
    assert report.delta_bytes > 400 * MiB  # the model was loaded and trained there
