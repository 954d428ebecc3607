"""Shared code for the Module 3.1 fine-tuning labs.

Import what you need from the submodules, e.g. `from utils.profiles import get_profile`.
Importing the package only quiets one harmless warning (see `utils.quiet`).
"""

from utils import quiet as _quiet

_quiet.install()
