"""Keep libraries' own warnings off the user's terminal.

transformers, PEFT, torch and friends warn about deprecations and internals that a user of
``doppelkit chat`` or the bot can do nothing about. The CLI (and a step run in another process)
turns them off unless ``verbose=true``; doppelkit's own messages are unaffected.
"""

from __future__ import annotations

import os
import warnings

LIBRARIES = ("torch", "transformers", "peft", "accelerate", "huggingface_hub", "tokenizers", "safetensors")
VERBOSE_ENV = "DOPPELKIT_VERBOSE"
QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def quiet_libraries() -> None:
    """Silence library warnings and advisory logs, in this process and the ones it starts."""
    if os.environ.get(VERBOSE_ENV) == "1":
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for library in LIBRARIES:
        warnings.filterwarnings("ignore", module=rf"{library}(\..*)?$")
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)


def be_verbose() -> None:
    """``verbose=true``: let every warning through again, here and in step processes."""
    os.environ[VERBOSE_ENV] = "1"
    for name in (
        "TRANSFORMERS_VERBOSITY",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS",
        "HF_HUB_DISABLE_PROGRESS_BARS",
    ):
        os.environ.pop(name, None)
    warnings.resetwarnings()
