"""One full rescan of the spool, handed to the loop a slice at a time.

The rescan is the safety net under inotify: every run directory and every
tracked run is looked at again. With 10,000 runs, listing the spool alone
takes ~20 ms and re-reading every run ~125 ms, so doing it in one go stalls
the loop and delays any exit that comes meanwhile. Here the spool is listed
incrementally (``os.scandir`` yields entries as it reads them) and run ids
come out in slices; the loop visits one slice per pass.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from sentinel.formats.spool import is_run_id


class RescanSweep:
    """The run ids one rescan visits: every run directory listed, then the
    tracked runs whose directory was not listed (removed under the daemon)."""

    def __init__(self, spool: Path) -> None:
        self._entries: Optional[Iterator[os.DirEntry[str]]]
        try:
            self._entries = os.scandir(spool)
        except OSError:
            self._entries = None
        self.listed: set[str] = set()  # run directories present in the spool
        # Whether inotify may have lost events since the last sweep: every tracked run is then
        # read again, not only those it cannot watch.
        self.events_missed = True
        self.family_notes_left = 0  # runs whose descendants this sweep may still note (the loop's budget)
        self._unlisted: Optional[deque[str]] = None  # tracked runs not listed, once listing ended

    @property
    def done(self) -> bool:
        return self._unlisted is not None and not self._unlisted

    def next_slice(self, limit: int, tracked: Callable[[], Iterable[str]]) -> list[str]:
        """Up to ``limit`` run ids to visit now, each once per sweep; ``tracked``
        gives the runs being tracked when the listing ends."""
        out: list[str] = []
        if self._entries is None and self._unlisted is None:
            self._end_listing(tracked)  # the spool could not be listed at all
        while len(out) < limit and self._entries is not None:
            try:
                entry = next(self._entries, None)
            except OSError:
                entry = None  # the spool went away mid-listing: what was listed is all there is
            if entry is None:
                self._end_listing(tracked)
                break
            if is_run_id(entry.name) and entry.name not in self.listed:
                self.listed.add(entry.name)
                out.append(entry.name)
        while len(out) < limit and self._unlisted:
            out.append(self._unlisted.popleft())
        return out

    def _end_listing(self, tracked: Callable[[], Iterable[str]]) -> None:
        self.close()
        self._unlisted = deque(run_id for run_id in tracked() if run_id not in self.listed)

    def close(self) -> None:
        if self._entries is not None:
            with contextlib.suppress(OSError):
                self._entries.close()  # type: ignore[attr-defined]
            self._entries = None
