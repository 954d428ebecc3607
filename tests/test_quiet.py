"""bitsandbytes' CPU warning about the optional `kernels` package is silenced by `import utils`.

Whether bitsandbytes emits the warning at all depends on the processor: 0.50 looks for the
accelerated kernel only on CPUs with AVX512-BF16. So the tests check the filter itself on every
machine, by logging the exact message through bitsandbytes' logger, and check the real import
only where the warning really appears.
"""

import importlib.util
import subprocess
import sys

import pytest

WARNING_TEXT = "kernels-community"
BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
# The message as bitsandbytes 0.50 logs it (bitsandbytes/backends/cpu/ops.py).
SIMULATED = (
    "import logging, utils\n"
    f"log = logging.getLogger({BNB_CPU_LOGGER!r})\n"
    "log.warning('Failed to load CPU gemm_4bit_forward from kernels-community: no network')\n"
    "log.warning('another bitsandbytes warning stays visible')\n"
)


def _stderr_of(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stderr


def test_kernels_package_is_not_installed():
    # With it installed, bitsandbytes would try a hub download of a kernel at import time.
    assert importlib.util.find_spec("kernels") is None


def test_filter_drops_exactly_the_kernels_warning():
    """Holds on every CPU: the message is logged by hand through the logger bitsandbytes uses."""
    stderr = _stderr_of(SIMULATED)
    assert WARNING_TEXT not in stderr
    assert "another bitsandbytes warning stays visible" in stderr


def test_real_import_is_quiet_where_the_warning_appears():
    """Processor-dependent: without AVX512-BF16, bitsandbytes never emits the warning, so there is nothing to filter."""
    if WARNING_TEXT not in _stderr_of("import bitsandbytes"):
        pytest.skip("bitsandbytes does not emit the kernels-community warning on this CPU (no AVX512-BF16)")
    assert WARNING_TEXT not in _stderr_of("import utils, bitsandbytes, trl")
