"""The fresh process behind `utils.memory.measure_peak_memory` (run as `python -m utils.memory_worker`).

Reads {"registry": "package.module", "target": name, "kwargs": {...}} as JSON on stdin (a Profile among the
kwargs arrives as every one of its fields and is rebuilt here, see `encode_profile`), imports the
registry (its imports count in the baseline; the course's is `utils.experiments.memory_targets`), looks the
target up in its TARGETS dict, records the peak resident memory, calls the function,
records the peak again, and prints one JSON line prefixed with REPORT_MARKER. On failure the
line carries "error" (the traceback) and the exit code is 1. Keep imports here minimal: every
module imported before the call inflates the baseline of every measurement.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback

REPORT_MARKER = "@@utils.memory report@@ "  # prefixes the one result line on stdout


def peak_rss_bytes() -> int:
    """Peak resident memory of this process image, in bytes.

    Linux: VmHWM from /proc/self/status, because ru_maxrss is inherited across exec from the
    parent (a notebook's old peak would become our baseline). Elsewhere ru_maxrss, which is
    bytes on macOS and KiB on the other Unixes.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB (KiB)
    except OSError:
        pass
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


PROFILE_KEY = "__course_profile__"  # a Profile in the request: {PROFILE_KEY: profile.to_dict()}


def encode_profile(value):
    """json.dumps' `default`: a Profile crosses to the worker as its every field (never re-resolved from its name)."""
    from utils.profiles import Profile

    if isinstance(value, Profile):
        return {PROFILE_KEY: value.to_dict()}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _decode_profile(obj: dict):
    if set(obj) == {PROFILE_KEY}:
        from utils.profiles import Profile

        return Profile.from_dict(obj[PROFILE_KEY])
    return obj


def _resolve(registry: str, target: str):
    targets = importlib.import_module(registry).TARGETS
    if target not in targets:
        raise KeyError(f"{registry} has no measurable target {target!r}; its targets: {sorted(targets)}")
    return targets[target]


def _emit(report: dict) -> None:
    sys.stdout.write("\n" + REPORT_MARKER + json.dumps(report) + "\n")
    sys.stdout.flush()


def main() -> int:
    raw = sys.stdin.read()
    try:
        request = json.loads(raw, object_hook=_decode_profile)  # inside try: a malformed profile is reported back
        func = _resolve(request["registry"], request["target"])
        baseline = peak_rss_bytes()
        start = time.perf_counter()
        result = func(**request.get("kwargs", {}))
        seconds = time.perf_counter() - start
        peak = peak_rss_bytes()
        report = {"baseline_bytes": baseline, "peak_bytes": peak, "seconds": seconds, "result": result}
        line = json.dumps(report)  # fail here, with a traceback, if the result is not JSON
    except BaseException:  # noqa: BLE001 - everything, including SystemExit, goes back to the parent
        _emit({"error": traceback.format_exc()})
        return 1
    sys.stdout.write("\n" + REPORT_MARKER + line + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
