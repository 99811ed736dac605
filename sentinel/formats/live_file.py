"""``live.bin``: the run's very last step and scalars, memory-mapped.

This module owns the one binary file of a run directory. The training thread
records each step with plain memory stores into a shared mapping (no
syscall, and the page cache keeps the bytes when the process is SIGKILLed);
the daemon reads it with ``pread`` and trusts none of it. Stdlib only.

Layout, version ``LIVE_VERSION`` (2). Little-endian, exactly ``LIVE_SIZE``
bytes, every field 8-byte aligned::

    0     8s    magic b"SNTLLIVE"
    8     u32   LIVE_VERSION
    12    u32   slots (MAX_SCALARS)     16  u32  name bytes per slot (LIVE_NAME_BYTES)
    32    the step slot (version 2; zeros in version 1):
          u64   seq            odd while being written, even once complete; 0: never written
          f64   time           wall-clock time of the last report
          f64   step           an integer below 2**53; NaN: none
    64    slots x LIVE_NAME_BYTES       scalar names, UTF-8, NUL-padded, append-only
    then two records of LIVE_RECORD_BYTES each:
          u64   seq            odd while the record is being written, even once complete
          f64   last_progress  wall-clock time of the report
          f64   step           an integer below 2**53; NaN: none
          slots x f64          the latest value of each named scalar; NaN: none yet

The step slot is the hot path: written on every report (every
``swanlab.log``) with four stores, so it always holds the step and time of
the last call. The records carry the scalars too; copying them costs a walk
over the caller's dict, so the step hook writes one at most every
``VALUES_EVERY`` seconds and the heartbeat thread writes the last values
when the training thread has stopped reporting (``sentinel.training.recorder``).

Both are seqlocks. Record write k goes to record k % 2: seq = 2k+1, the
body, then seq = 2k+2; a reader takes the complete record with the highest
seq, so a process killed in the middle of a write leaves the other record,
one report older, intact. The step slot is one seqlock of its own: a reader
that finds it odd (killed mid-store) falls back to the newest record's step
and time. A name is in place before any record holds a value for it.

Version 1 files (no step slot, otherwise the same) are still read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import mmap
import numbers
import os
import re
import stat
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from sentinel.formats.safe_json import SpoolFormatError, open_untrusted
from sentinel.formats.spool import LIVE_FILE, MAX_SCALARS, Progress

LIVE_VERSION = 2
LIVE_VERSIONS_READ = (1, 2)
LIVE_MAGIC = b"SNTLLIVE"
LIVE_NAME_BYTES = 48
# At most this often (seconds) the step hook copies the logged values into a record.
VALUES_EVERY = 0.1
_HEADER = struct.Struct("<8sIII")
_STEP_SLOT_OFF = 32
_STEP_SLOT = struct.Struct("<Qdd")
_NAMES_OFF = 64
_RECORDS_OFF = _NAMES_OFF + MAX_SCALARS * LIVE_NAME_BYTES
_SEQ = struct.Struct("<Q")
_FIELDS = 2 + MAX_SCALARS  # last_progress, step, values: all f64
_RECORD_FIELDS = struct.Struct(f"<{_FIELDS}d")
LIVE_RECORD_BYTES = _SEQ.size + 8 * _FIELDS
LIVE_SIZE = _RECORDS_OFF + 2 * LIVE_RECORD_BYTES
_STEP_LIMIT = 2**53  # exact in a double; no run gets that far
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Word indices (8 bytes each) of the step slot's fields in the mapping.
_SLOT_SEQ = _STEP_SLOT_OFF // 8
_SLOT_TIME = _SLOT_SEQ + 1
_SLOT_STEP = _SLOT_SEQ + 2


class LiveWriter:
    """The training process's side of ``live.bin``.

    ``note_step`` (the step slot) is the per-call hot path; ``write_values``
    copies the scalars into a record; ``update`` does both. Each part is meant
    for one writing thread at a time (the recorder serialises the records);
    callers catch exceptions (an absurd value may not fit a float).
    """

    __slots__ = ("_mm", "_words", "_doubles", "_fields", "_slots", "_names", "_writes", "_steps",
                 "_step")

    def __init__(self, mm: mmap.mmap) -> None:
        self._mm = mm
        # Item and slice stores through cast memoryviews are the cheapest
        # writes Python has into a mapping (struct.pack_into costs about as much
        # as two of them, and a seqlock needs its stores in order).
        view = memoryview(mm)
        self._words = view.cast("Q")
        self._doubles = view.cast("d")
        self._fields = array("d", [math.nan] * _FIELDS)  # the next record, in memory
        self._slots: dict[Any, int] = {}  # the caller's key -> slot (-1: refused)
        self._names = 0
        self._writes = 0
        self._steps = 0  # the step slot's seq
        self._step = math.nan  # the last step reported, for reports that name none

    @classmethod
    def create(cls, run_dir: Path) -> LiveWriter:
        """Make ``run_dir``/live.bin (new, 0600, never through a symlink) and map it."""
        dir_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fd = os.open(LIVE_FILE, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        try:
            os.ftruncate(fd, LIVE_SIZE)  # zeros: both records and the slot "never written" (seq 0)
            # Blocks reserved now: a store into a mapping whose page the disk
            # cannot hold is a SIGBUS that kills the training process.
            os.posix_fallocate(fd, 0, LIVE_SIZE)
            mm = mmap.mmap(fd, LIVE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            with contextlib.suppress(OSError):  # no half-made file for the daemon to puzzle over
                os.unlink(run_dir / LIVE_FILE)
            raise
        finally:
            os.close(fd)
        _HEADER.pack_into(mm, 0, LIVE_MAGIC, LIVE_VERSION, MAX_SCALARS, LIVE_NAME_BYTES)
        return cls(mm)

    def note_step(self, when: float, step: int) -> None:
        """The step slot: ``step`` (an int from 0 below 2**53, the caller's
        promise) reported at ``when``. Four stores, in seqlock order."""
        seq = self._steps = self._steps + 2
        words = self._words
        doubles = self._doubles
        words[_SLOT_SEQ] = seq - 1
        doubles[_SLOT_TIME] = when
        doubles[_SLOT_STEP] = self._step = step
        words[_SLOT_SEQ] = seq

    def update(self, when: float, step: Any, scalars: Optional[Mapping[str, Any]]) -> None:
        """A whole report: the step slot and a record with the values (one
        function, not two calls: this is ``run.beat``'s hot path)."""
        words = self._words
        doubles = self._doubles
        if type(step) is int and -_STEP_LIMIT < step < _STEP_LIMIT:
            self._step = step
        seq = self._steps = self._steps + 2
        words[_SLOT_SEQ] = seq - 1
        doubles[_SLOT_TIME] = when
        doubles[_SLOT_STEP] = self._step  # no step named: the last one stays
        words[_SLOT_SEQ] = seq
        self._write_record(when, scalars)

    def write_values(self, when: float, scalars: Optional[Mapping[str, Any]]) -> None:
        """A record: the step of the last ``note_step``, ``when`` and ``scalars``."""
        self._write_record(when, scalars)

    def _write_record(self, when: float, scalars: Optional[Mapping[str, Any]]) -> None:
        fields = self._fields
        fields[0] = when
        fields[1] = self._step
        if scalars:
            slots = self._slots
            for key, value in scalars.items():
                kind = type(value)
                # numpy scalars register as numbers.Real; tensors do not, and
                # converting one could force a device sync.
                if kind is not float and kind is not int and (
                        kind is bool or not isinstance(value, numbers.Real)):
                    continue
                slot = slots.get(key)
                if slot is None:
                    slot = self._add_name(key)
                if slot >= 0:
                    try:  # noqa: SIM105 - contextlib.suppress costs more than the store
                        fields[slot] = value
                    except (OverflowError, TypeError, ValueError):  # no float holds it
                        pass
        writes = self._writes = self._writes + 1
        word = (_RECORDS_OFF + (writes & 1) * LIVE_RECORD_BYTES) // 8
        self._words[word] = 2 * writes + 1
        self._doubles[word + 1:word + 1 + _FIELDS] = fields
        self._words[word] = 2 * writes + 2

    def _add_name(self, key: Any) -> int:
        """The slot for a new scalar name, or -1 (no room, or a bool key...)."""
        if self._names >= MAX_SCALARS or not isinstance(key, str):
            self._slots[key] = -1
            return -1
        raw = key.encode("utf-8", "replace")[:LIVE_NAME_BYTES].decode("utf-8", "ignore").encode("utf-8")
        offset = _NAMES_OFF + self._names * LIVE_NAME_BYTES
        self._mm[offset:offset + LIVE_NAME_BYTES] = raw.ljust(LIVE_NAME_BYTES, b"\0")
        slot = 2 + self._names  # the index into the record's fields
        self._names += 1
        self._slots[key] = slot
        return slot


@dataclass(frozen=True)
class LiveProgress:
    """What the run last reported: the step slot's step and time when it is
    the newer, and the newest complete record's scalars."""

    seq: int  # the record's; 0: no record yet, only the step slot
    last_progress: Optional[float]
    step: Optional[int]
    scalars: dict[str, float]
    # Names whose latest value was NaN or infinite: gone from the metrics, as
    # in beat.json, so an older finite value must not stand in for them.
    cleared: frozenset[str] = frozenset()


def with_live(progress: Optional[Progress], live: Optional[LiveProgress]) -> Optional[Progress]:
    """``progress`` brought up to ``live``: a heartbeat is up to an interval
    old, the mapped record is the very last report."""
    if live is None or live.last_progress is None:
        return progress
    if progress is None:
        # No heartbeat yet: the report itself shows the process ran.
        return Progress(beat=live.last_progress, seq=0, last_progress=live.last_progress,
                        step=live.step, scalars=dict(live.scalars))
    if progress.last_progress is not None and live.last_progress <= progress.last_progress:
        return progress
    older = {k: v for k, v in progress.scalars.items() if k not in live.scalars and k not in live.cleared}
    return dataclasses.replace(
        progress,
        last_progress=live.last_progress,
        step=live.step if live.step is not None else progress.step,
        scalars={**live.scalars, **older},
    )


def read_live(run_dir: Path, *,
              dir_fd: Optional[int] = None) -> tuple[Optional[LiveProgress], os.stat_result]:
    """The run's latest step and scalars from ``live.bin`` (None: none recorded yet).

    The file is written by the run's owner and read by a possibly-root
    daemon, so: opened relative to the run directory, never through a
    symlink, never blocking (a FIFO), exactly ``LIVE_SIZE`` bytes of a
    regular file, read with ``pread`` (a file truncated under a mapping would
    SIGBUS the reader), and every number checked. Raises FileNotFoundError if
    the run or file is absent, SpoolFormatError for anything else.
    """
    if dir_fd is not None:  # the run directory, opened already
        fd = open_untrusted(LIVE_FILE, dir_fd)
    else:
        try:
            run_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise
            raise SpoolFormatError(f"run directory: {exc.strerror}") from None
        try:
            fd = open_untrusted(LIVE_FILE, run_fd)
        finally:
            os.close(run_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SpoolFormatError("not a regular file")
        if st.st_size != LIVE_SIZE:
            raise SpoolFormatError(f"{st.st_size} bytes, not {LIVE_SIZE}")
        for _attempt in range(3):  # a live writer may tear a read; a dead one never
            first, second = _images(fd)
            version = _version(first)
            step_slot, slot_torn = _step_slot(first, second) if version >= 2 else (None, False)
            record, records_torn = _newest_record(first, second)
            if not slot_torn and (record is not None or not records_torn):
                break
    finally:
        os.close(fd)
    # Names from the second image, read after the record: any name the record counts was in place.
    live = _decode_live(record, second[_NAMES_OFF:_RECORDS_OFF]) if record is not None else None
    return _with_step_slot(live, step_slot), st


def _images(fd: int) -> tuple[bytes, bytes]:
    """The whole file twice, one ``pread`` each (two syscalls, where a read per
    field and seq took eleven). A seqlocked region that is the same in both,
    with an even seq, was complete: a write that began before the first copy
    of it and ended before the second would have raised its seq."""
    first = os.pread(fd, LIVE_SIZE, 0)
    second = os.pread(fd, LIVE_SIZE, 0)
    if len(first) != LIVE_SIZE or len(second) != LIVE_SIZE:
        raise SpoolFormatError("truncated")
    return first, second


def _version(image: bytes) -> int:
    magic, version, slots, name_bytes = _HEADER.unpack_from(image)
    if magic != LIVE_MAGIC:
        raise SpoolFormatError("not a live progress file")
    if version not in LIVE_VERSIONS_READ or (slots, name_bytes) != (MAX_SCALARS, LIVE_NAME_BYTES):
        raise SpoolFormatError(f"unknown live format version {version} "
                               f"(this reader knows {', '.join(map(str, LIVE_VERSIONS_READ))})")
    return int(version)


def _seqlocked(first: bytes, second: bytes, offset: int, size: int) -> tuple[Optional[bytes], bool]:
    """(the body at ``offset`` if complete, whether it was torn)."""
    body = first[offset:offset + size]
    if body != second[offset:offset + size] or _SEQ.unpack_from(body)[0] % 2:
        return None, True  # being written now, or the writer died in the middle
    return body, False


def _step_slot(first: bytes, second: bytes) -> tuple[Optional[tuple[float, Optional[int]]], bool]:
    """((time, step) of the step slot if complete and sane, whether it was torn)."""
    body, torn = _seqlocked(first, second, _STEP_SLOT_OFF, _STEP_SLOT.size)
    if body is None:
        return None, torn
    seq, when, step = _STEP_SLOT.unpack(body)
    if seq == 0 or not (math.isfinite(when) and when > 0):
        return None, False
    return (when, _step_or_none(step)), False


def _newest_record(first: bytes, second: bytes) -> tuple[Optional[bytes], bool]:
    """(the complete record with the highest seq, whether one was torn)."""
    best: Optional[bytes] = None
    best_seq = 0
    torn = False
    for index in (0, 1):
        offset = _RECORDS_OFF + index * LIVE_RECORD_BYTES
        body, torn_now = _seqlocked(first, second, offset, LIVE_RECORD_BYTES)
        torn = torn or torn_now
        if body is not None:
            seq = _SEQ.unpack_from(body)[0]
            if seq > best_seq:
                best, best_seq = body, seq
    return best, torn


def _step_or_none(step: float) -> Optional[int]:
    return int(step) if math.isfinite(step) and step.is_integer() and abs(step) < _STEP_LIMIT else None


def _decode_live(record: bytes, names: bytes) -> LiveProgress:
    seq = _SEQ.unpack_from(record, 0)[0]
    last_progress, step, *values = _RECORD_FIELDS.unpack_from(record, _SEQ.size)
    scalars: dict[str, float] = {}
    cleared: set[str] = set()
    for slot, value in enumerate(values):
        start = slot * LIVE_NAME_BYTES
        if not names[start]:
            continue  # a slot never named (most are): decoding its NULs finds nothing
        raw = names[start:start + LIVE_NAME_BYTES].split(b"\0", 1)[0]
        name = _CONTROL_CHARS.sub("", raw.decode("utf-8", "replace"))
        if not name:
            continue
        if math.isfinite(value):
            scalars.setdefault(name, value)
        else:
            cleared.add(name)
    return LiveProgress(
        seq=seq,
        last_progress=last_progress if math.isfinite(last_progress) and last_progress > 0 else None,
        step=_step_or_none(step),
        scalars=scalars,
        cleared=frozenset(cleared - set(scalars)),
    )


def _with_step_slot(live: Optional[LiveProgress],
                    slot: Optional[tuple[float, Optional[int]]]) -> Optional[LiveProgress]:
    """The record brought up to the step slot, when the slot is the newer."""
    if slot is None:
        return live
    when, step = slot
    if live is None:
        return LiveProgress(seq=0, last_progress=when, step=step, scalars={})
    if live.last_progress is not None and when < live.last_progress:
        return live
    return dataclasses.replace(live, last_progress=when, step=step if step is not None else live.step)
