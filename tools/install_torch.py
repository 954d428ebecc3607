"""Install a CPU torch unless one is already importable, then pin whatever torch is present.

Why: an unpinned `torch` requirement (pulled in by transformers, peft, ...) downloads a
multi-GB CUDA build on a laptop, and on DGX Spark it would replace the NGC container's
torch, which is built for the GB10. The constraint file written here makes every later
`pip install -c <file>` keep the torch that is present.
"""

import os
import subprocess
import sys
from pathlib import Path

CPU_TORCH = "torch==2.13.0"
# On a laptop with ordinary PyPI access, plain `pip install torch` on Linux x86_64 fetches the
# CUDA build; set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu to get the CPU wheel.
INDEX_ENV = "TORCH_INDEX_URL"


def installed_torch_version() -> str | None:
    """The installed distribution's version, which is what pip's constraint is checked against: PyPI's CUDA wheel
    says `torch.__version__ == "2.13.0+cu130"` but installs as 2.13.0, so pinning the former stops pip."""
    probe = subprocess.run([sys.executable, "-c", "import importlib.metadata as m, torch; print(m.version('torch'))"],
                           capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else None


def main(constraint_path: str) -> None:
    version = installed_torch_version()
    if version is None:
        index = os.environ.get(INDEX_ENV)
        print(f"No torch found: installing {CPU_TORCH}" + (f" from {index}" if index else ""))
        extra = ["--index-url", index] if index else []
        subprocess.run([sys.executable, "-m", "pip", "install", CPU_TORCH, *extra], check=True)
        version = installed_torch_version()
    else:
        print(f"Keeping the torch already present: {version}")
    Path(constraint_path).write_text(f"torch=={version}\n")


if __name__ == "__main__":
    main(sys.argv[1])
