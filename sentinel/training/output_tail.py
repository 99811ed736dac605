"""The last lines a run printed: ``sys.stdout`` and ``sys.stderr`` teed into memory.

``OutputTail.install()`` puts a thin proxy in front of each stream: every
``write`` goes to the stream first, unchanged (its return value and errors
are the stream's), then the text is appended to a bounded buffer in memory.
No I/O and no lock on the training thread: the heartbeat thread copies the
last ``MAX_LINES`` lines (each at most ``MAX_LINE_CHARS``, secrets masked)
into ``beat.json`` (``Progress.output``), so a run killed with SIGKILL still
shows what it printed up to its last heartbeat.

Only Python-level writes are seen (``print``, logging, tqdm, SwanLab's own
console), not a C library's writes to fd 1/2. ``uninstall`` puts the
original stream back if the proxy is still in place and untouched; if
something wrapped or patched it since, the proxy stays and only stops
recording. Stdlib only.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any, Optional

from sentinel.common.redact import redact
from sentinel.common.safetext import printable

MAX_LINES = 20
MAX_LINE_CHARS = 300
_MAX_PENDING = 4 * MAX_LINE_CHARS  # an unterminated line is kept up to this much


class _Tee:
    """A stream's stand-in: writes go through, then into the tail."""

    def __init__(self, stream: Any, tail: OutputTail) -> None:
        self._stream = stream
        self._tail = tail

    def write(self, text: Any) -> Any:
        result = self._stream.write(text)
        tail = self._tail
        if tail.active and isinstance(text, str):
            try:  # noqa: SIM105 -- contextlib.suppress costs more than this
                tail.chunks.append(text)
            except Exception:
                pass
        return result

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ...
        return getattr(self._stream, name)


class OutputTail:
    """What this process printed last, for its run's alerts."""

    def __init__(self) -> None:
        # Raw writes, appended by any thread (deque.append is atomic under the GIL).
        self.chunks: deque[str] = deque(maxlen=4 * MAX_LINES)
        self.lines: deque[str] = deque(maxlen=MAX_LINES)
        self.pending = ""
        self.active = False
        self._tees: list[tuple[str, _Tee, Any]] = []

    def install(self) -> None:
        self.active = True
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name, None)
            if stream is None or isinstance(stream, _Tee):
                continue
            tee = _Tee(stream, self)
            setattr(sys, name, tee)
            self._tees.append((name, tee, stream))

    def uninstall(self) -> None:
        self.active = False
        kept = []
        for name, tee, stream in self._tees:
            # Someone patched the proxy's own ``write`` (SwanLab <= 0.7 patches
            # ``sys.stdout.write`` and later puts back what it saw): swapping the
            # stream now would hand that patch a loop. The proxy stays, silent.
            if getattr(sys, name, None) is tee and "write" not in vars(tee):
                setattr(sys, name, stream)
            else:
                kept.append((name, tee, stream))
        self._tees = kept

    def snapshot(self) -> list[str]:
        """The last lines, complete ones first and then the unterminated rest
        (called on the heartbeat thread)."""
        while self.chunks:
            try:
                text = self.chunks.popleft()
            except IndexError:
                break
            parts = (self.pending + text).split("\n")
            self.pending = parts.pop()[-_MAX_PENDING:]
            for line in parts[-MAX_LINES:]:
                line = line.rstrip("\r").rsplit("\r", 1)[-1]  # a progress bar's last redraw
                if line.strip():
                    self.lines.append(_clean(line))
        lines = list(self.lines)
        pending = self.pending.rsplit("\r", 1)[-1]
        if pending.strip():
            lines = (lines + [_clean(pending)])[-MAX_LINES:]
        return lines


def _clean(line: str) -> str:
    return redact(printable(line[:MAX_LINE_CHARS * 2]))[:MAX_LINE_CHARS]


_shared: Optional[OutputTail] = None


def shared() -> OutputTail:
    """The process's one tail (every run of the process reads the same output)."""
    global _shared
    if _shared is None:
        _shared = OutputTail()
    return _shared
