"""A stop that a signal asked for (SIGTERM, handled like Ctrl-C), honoured even when its exception is lost.

The CLI installs `on_signal` for SIGTERM and SIGINT: it raises `Terminated` (SIGTERM) or
`KeyboardInterrupt` (SIGINT) at once, wherever the main thread is. Python drops an exception raised
while a finalizer runs (a `__del__`, a weakref callback: TensorFlow and Keras run many) with an
"Exception ignored" line, and the run would go on as if nothing was asked. So the handler also
records the request, and `check()` raises it again at safe points: after every training batch and
before every stage.
"""

from __future__ import annotations

import signal
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the MLflow run ends KILLED and the same command resumes."""


_requested: type[KeyboardInterrupt] | None = None


def on_signal(signum: int, frame: Any) -> None:
    """The SIGTERM / SIGINT handler: remember the request, then raise it here."""
    global _requested
    _requested = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    raise _requested()


def check() -> None:
    """Raise the stop a signal asked for, if its first exception was lost."""
    if _requested is not None:
        raise _requested()


def reset() -> None:
    """Forget a handled request (the CLI, once its command has returned)."""
    global _requested
    _requested = None
