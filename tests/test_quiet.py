"""bitsandbytes' CPU warning about the optional `kernels` package is silenced by `import utils`."""

import importlib.util
import subprocess
import sys

WARNING_TEXT = "kernels-community"


def _stderr_of(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stderr


def test_kernels_package_is_not_installed():
    # With it installed, bitsandbytes would try a hub download of a kernel at import time.
    assert importlib.util.find_spec("kernels") is None


def test_warning_appears_without_utils_and_not_with_it():
    assert WARNING_TEXT in _stderr_of("import bitsandbytes"), "the warning this filter targets no longer exists"
    assert WARNING_TEXT not in _stderr_of("import utils, bitsandbytes, trl")
