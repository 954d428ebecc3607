"""Silence the one warning that every CPU user would otherwise see on each import.

bitsandbytes 0.50 tries, on CPU, to fetch an optional accelerated 4-bit kernel through the
`kernels` package (a hub download, impossible offline) and logs a warning when it cannot.
The pure-PyTorch fallback it then uses is correct, so the course keeps `kernels` out and
filters exactly that message, leaving every other bitsandbytes warning visible.

Likewise transformers 5.23 deprecates `is_gradient_checkpointing`, which PEFT and TRL still call
internally on every training run; students cannot act on that warning, so it is hidden too.
"""

import logging
import warnings

_BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"


class _DropKernelsHubWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()


def install() -> None:
    logger = logging.getLogger(_BNB_CPU_LOGGER)
    if not any(isinstance(f, _DropKernelsHubWarning) for f in logger.filters):
        logger.addFilter(_DropKernelsHubWarning())
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
