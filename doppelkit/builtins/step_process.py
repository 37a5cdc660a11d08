"""The child side of the ``process`` backend: ``python -m doppelkit.builtins.step_process R W``.

Reads the caller's ``sys.path``, then ``(step, args, kwargs)``, pickled on file descriptor
``R``; runs the step and writes ``("ok", result)``, ``("user_error", (message, exit_code))``
or ``("error", exception)`` to file descriptor ``W``. A user mistake prints nothing here (the
caller reports it, once); any other error prints its traceback here, where it happened.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from typing import Any


def _portable(exc: BaseException) -> Any:
    """The exception itself if it survives pickling, else its description."""
    try:
        return pickle.loads(pickle.dumps(exc))
    except Exception:
        return f"{type(exc).__name__}: {exc}"


def main(read_fd: int, write_fd: int) -> int:
    from doppelkit.quiet import quiet_libraries

    quiet_libraries()  # as in the caller (unless it was verbose: the environment says)
    with os.fdopen(read_fd, "rb") as source:
        sys.path[:] = pickle.load(source)  # first, so the step's module imports as it did there
        step, args, kwargs = pickle.load(source)
    from doppelkit.errors import UserError
    from doppelkit.termination import Terminated, sigterm_raises

    try:
        with sigterm_raises():  # the caller forwards its SIGTERM: clean up as it does
            outcome: tuple[str, Any] = ("ok", step(*args, **kwargs))
    except UserError as exc:
        outcome = ("user_error", (str(exc), getattr(exc, "exit_code", 2)))
    except BaseException as exc:
        if not isinstance(exc, (KeyboardInterrupt, Terminated)):
            traceback.print_exc()
        outcome = ("error", _portable(exc))
    try:
        answer = pickle.dumps(outcome)
    except Exception as exc:  # a result that cannot travel is the step's bug
        answer = pickle.dumps(("error", f"the step's result cannot be pickled: {exc}"))
    with os.fdopen(write_fd, "wb") as sink:
        sink.write(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
