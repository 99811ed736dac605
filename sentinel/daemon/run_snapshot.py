"""A run as one event sees it: everything read from one opened run directory.

An exit, a final record appearing or a rescan visit needs several of a
run's files: its queued messages, its final record, its progress
(``beat.json`` brought up to ``live.bin``) and whether its directory is
still the one admitted. Reading each through its own open of the run
directory cost an open, an fstat and an identity check apiece, and let the
directory change between the reads. ``take`` opens and verifies the
directory once (``RunReader.admitted_dir``: by name in the spool, never
through a symlink, device and inode as admitted) and reads every file in
that fd with the reader's hostile-input rules (``RunReader.final_in``,
``progress_in``, ``messages_in``: no symlink, FIFO or terminal opened, size
caps, NaN refused, the owner checked in a shared spool).

Messages are read first and the final record after them: a run writes its
last messages before its final record, so a final record seen here never
has a message of the same run left unread behind it.

A snapshot holds the ``msg/`` fd its delivered messages are unlinked in:
use it as a context manager.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from sentinel.daemon.run_reader import PendingMessages, RunReader, TrackedRun
from sentinel.formats.spool import FinalRecord, Progress


@dataclass(frozen=True)
class RunSnapshot:
    """What one read of a run's directory found."""

    present: bool  # the admitted directory is still in the spool
    final: Optional[FinalRecord] = None
    progress: Optional[Progress] = None  # the run's last known progress when the directory is gone
    messages: PendingMessages = field(default_factory=PendingMessages)

    def close(self) -> None:
        self.messages.close()

    def __enter__(self) -> RunSnapshot:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def take(reader: RunReader, run: TrackedRun, *, progress_unless_final: bool = True) -> RunSnapshot:
    """The run's messages, final record and progress, from one open of its directory.

    ``progress_unless_final`` False (a rescan's look at a live run): progress
    (``beat.json``, ``live.bin``) is read only if there is a final record, the
    one case its alert needs it; otherwise ``progress`` stays None."""
    with reader.admitted_dir(run) as dir_fd:
        if dir_fd is None:
            return RunSnapshot(present=False, progress=run.progress)
        messages = reader.messages_in(run, dir_fd)
        try:
            final = reader.final_in(run, dir_fd)
            wanted = progress_unless_final or final is not None
            progress = reader.progress_in(run, dir_fd) if wanted else None
        except BaseException:
            messages.close()
            raise
        return RunSnapshot(present=True, final=final, progress=progress, messages=messages)
