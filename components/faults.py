"""Named failure points (as etcd's and TiKV's failpoints): `RNNPIPE_KILL_AT=<point>` makes the
process kill itself with SIGKILL when it reaches that point, so tests can show that a kill -9 at
each step of export, infra validation, push and registration leaves nothing unvalidated served
and no duplicate registry version. Unset (always, outside such tests), `point` does nothing.
"""

from __future__ import annotations

import os
import signal

ENV = "RNNPIPE_KILL_AT"
POINTS = ("export:written", "infra_validate:serving", "push:copied", "push:renamed", "register:logged")
TRAIN_CHECKPOINTED = "train:checkpointed"  # at the epoch after a checkpoint (tests/test_reliability.py)


def point(name: str) -> None:
    """SIGKILL this process if RNNPIPE_KILL_AT names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
