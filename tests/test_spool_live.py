"""live.bin: the memory-mapped last step and scalars, and its hostile-input-safe reader."""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import pytest

from sentinel.formats import live_file, safe_json, spool

RECORDS = live_file.LIVE_SIZE - 2 * live_file.LIVE_RECORD_BYTES
STEP_SLOT = 32


def writer(tmp_path: Path) -> live_file.LiveWriter:
    return live_file.LiveWriter.create(tmp_path)


def test_nothing_reported_yet_reads_as_none(tmp_path: Path) -> None:
    writer(tmp_path)
    live, st = live_file.read_live(tmp_path)
    assert live is None and st.st_size == live_file.LIVE_SIZE
    assert (tmp_path / live_file.LIVE_FILE).stat().st_mode & 0o777 == 0o600


def test_latest_step_and_values_win(tmp_path: Path) -> None:
    live = writer(tmp_path)
    live.update(100.0, 1, {"loss": 2.5, "acc": 0.1})
    live.update(101.0, 2, {"loss": 1.5})  # acc keeps its last value
    live.update(102.0, None, {"tensor": object(), "flag": True, "lr": 3})
    got, _ = live_file.read_live(tmp_path)
    assert got is not None
    assert (got.last_progress, got.step) == (102.0, 2)
    assert got.scalars == {"loss": 1.5, "acc": 0.1, "lr": 3.0}
    assert list(got.scalars) == ["loss", "acc", "lr"]  # the order they were first logged


def test_values_no_float_holds_are_skipped_not_raised(tmp_path: Path) -> None:
    live = writer(tmp_path)
    live.update(100.0, 10**30, {"big": 10**400, "nan": math.nan, "loss": 0.5})
    got, _ = live_file.read_live(tmp_path)
    assert got is not None and got.step is None and got.scalars == {"loss": 0.5}
    assert got.cleared == {"big", "nan"}  # known, but the latest value is no finite float


def test_at_most_max_scalars_names(tmp_path: Path) -> None:
    live = writer(tmp_path)
    live.update(1.0, 1, {f"m{i}": float(i) for i in range(live_file.MAX_SCALARS + 5)})
    got, _ = live_file.read_live(tmp_path)
    assert got is not None and list(got.scalars) == [f"m{i}" for i in range(live_file.MAX_SCALARS)]


def test_a_write_cut_short_leaves_the_previous_record(tmp_path: Path) -> None:
    live = writer(tmp_path)
    live.update(100.0, 7, {"loss": 0.7})  # write 1: record 1
    live.update(101.0, 8, {"loss": 0.8})  # write 2: record 0
    # Killed in the middle of write 3, to record 1: its seq is odd (2*3+1).
    path = tmp_path / live_file.LIVE_FILE
    with open(path, "r+b") as f:
        f.seek(RECORDS + live_file.LIVE_RECORD_BYTES)
        f.write(struct.pack("<Q", 7))
    got, _ = live_file.read_live(tmp_path)
    assert got is not None and (got.step, got.scalars) == (8, {"loss": 0.8})
    # Both records cut short: no values to trust; the step slot still names the step.
    with open(path, "r+b") as f:
        f.seek(RECORDS)
        f.write(struct.pack("<Q", 5))
    got, _ = live_file.read_live(tmp_path)
    assert got is not None and (got.step, got.scalars) == (8, {})
    # And the step slot cut short too: nothing trustworthy, nothing reported.
    _rewrite(path, STEP_SLOT, struct.pack("<Q", 3))
    assert live_file.read_live(tmp_path)[0] is None


def test_which_record_is_newest_is_decided_by_seq(tmp_path: Path) -> None:
    live = writer(tmp_path)
    for step in range(1, 6):
        live.update(100.0 + step, step, {"loss": 1 / step})
    got, _ = live_file.read_live(tmp_path)
    assert got is not None and got.step == 5 and got.seq == 12


def _rewrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_hostile_numbers_and_names_are_not_trusted(tmp_path: Path) -> None:
    live = writer(tmp_path)
    live.update(100.0, 3, {"loss": 0.5, "acc": 0.25})
    path = tmp_path / live_file.LIVE_FILE
    body = RECORDS + live_file.LIVE_RECORD_BYTES + 8  # write 1 went to record 1
    _rewrite(path, body, struct.pack("<dd", math.inf, 2.5))  # time inf, step not whole
    _rewrite(path, body + 24, struct.pack("<d", math.nan))  # acc: NaN
    _rewrite(path, 64, b"\x1b[31mloss\x07".ljust(live_file.LIVE_NAME_BYTES, b"\0"))
    _rewrite(path, STEP_SLOT + 8, struct.pack("<dd", math.nan, 1e300))  # the step slot: no time, no step
    got, _ = live_file.read_live(tmp_path)
    assert got is not None
    assert got.last_progress is None and got.step is None
    assert got.scalars == {"[31mloss": 0.5}  # no escape sequence reaches a terminal


@pytest.mark.parametrize("damage", ["short", "long", "magic", "version"])
def test_a_malformed_file_is_refused(tmp_path: Path, damage: str) -> None:
    writer(tmp_path).update(1.0, 1, {"loss": 1.0})
    path = tmp_path / live_file.LIVE_FILE
    if damage == "short":
        os.truncate(path, live_file.LIVE_SIZE - 1)
    elif damage == "long":
        os.truncate(path, live_file.LIVE_SIZE + 4096)
    elif damage == "magic":
        _rewrite(path, 0, b"NOTLIVE!")
    else:
        _rewrite(path, 8, struct.pack("<I", live_file.LIVE_VERSION + 1))
    with pytest.raises(safe_json.SpoolFormatError):
        live_file.read_live(tmp_path)


def test_symlink_fifo_and_symlinked_run_dir_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    writer(target).update(1.0, 1, {"loss": 1.0})
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(target / live_file.LIVE_FILE, run / live_file.LIVE_FILE)
    with pytest.raises(safe_json.SpoolFormatError, match="symlink"):
        live_file.read_live(run)
    os.unlink(run / live_file.LIVE_FILE)
    os.mkfifo(run / live_file.LIVE_FILE)  # opened without blocking, then refused
    with pytest.raises(safe_json.SpoolFormatError, match="regular"):
        live_file.read_live(run)
    linked = tmp_path / "linked-run"
    os.symlink(target, linked)
    with pytest.raises(safe_json.SpoolFormatError):
        live_file.read_live(linked)
    with pytest.raises(FileNotFoundError):
        live_file.read_live(tmp_path / "absent")


def test_create_never_follows_or_reuses_a_planted_file(tmp_path: Path) -> None:
    os.symlink(tmp_path / "victim", tmp_path / live_file.LIVE_FILE)
    with pytest.raises(FileExistsError):
        live_file.LiveWriter.create(tmp_path)
    assert not (tmp_path / "victim").exists()


def test_with_live_brings_a_heartbeat_up_to_date() -> None:
    beat = spool.Progress(beat=50.0, seq=3, last_progress=40.0, step=4, scalars={"loss": 0.4, "gpu": 0.9})
    newer = live_file.LiveProgress(seq=10, last_progress=45.0, step=9, scalars={"loss": 0.1})
    merged = live_file.with_live(beat, newer)
    assert merged is not None and (merged.beat, merged.last_progress, merged.step) == (50.0, 45.0, 9)
    assert merged.scalars == {"loss": 0.1, "gpu": 0.9}
    diverged = live_file.LiveProgress(seq=11, last_progress=46.0, step=10, scalars={},
                                  cleared=frozenset({"loss"}))
    merged = live_file.with_live(beat, diverged)
    assert merged is not None and merged.scalars == {"gpu": 0.9}  # no stale finite loss
    older = live_file.LiveProgress(seq=10, last_progress=39.0, step=3, scalars={"loss": 0.5})
    assert live_file.with_live(beat, older) is beat
    assert live_file.with_live(beat, None) is beat
    alone = live_file.with_live(None, newer)
    assert alone is not None and alone.step == 9 and alone.beat == 45.0


def test_the_step_slot_is_newer_than_the_values(tmp_path: Path) -> None:
    """The step hook stores each step and time; the values follow later."""
    live = writer(tmp_path)
    live.update(100.0, 1, {"loss": 1.0})
    live.note_step(105.0, 6)
    got, _ = live_file.read_live(tmp_path)
    assert got is not None and (got.last_progress, got.step, got.scalars) == (105.0, 6, {"loss": 1.0})
    live.write_values(105.0, {"loss": 1 / 6})
    got, _ = live_file.read_live(tmp_path)
    assert got is not None and (got.step, got.scalars) == (6, {"loss": 1 / 6})


def test_a_step_alone_is_reported_without_values(tmp_path: Path) -> None:
    writer(tmp_path).note_step(100.0, 37)
    got, _ = live_file.read_live(tmp_path)
    assert got is not None and (got.seq, got.last_progress, got.step, got.scalars) == (0, 100.0, 37, {})


def test_a_step_slot_cut_short_falls_back_to_the_record(tmp_path: Path) -> None:
    live = writer(tmp_path)
    live.update(100.0, 7, {"loss": 0.7})
    live.note_step(101.0, 8)
    # Killed between the stores of the next step: the slot's seq is odd.
    _rewrite(tmp_path / live_file.LIVE_FILE, STEP_SLOT, struct.pack("<Q", 5))
    got, _ = live_file.read_live(tmp_path)
    assert got is not None and (got.last_progress, got.step, got.scalars) == (100.0, 7, {"loss": 0.7})


def test_a_version_1_file_is_still_read(tmp_path: Path) -> None:
    """Version 1 had no step slot: its bytes are zeros and are not read."""
    live = writer(tmp_path)
    live.update(100.0, 4, {"loss": 0.25})
    path = tmp_path / live_file.LIVE_FILE
    _rewrite(path, 8, struct.pack("<I", 1))
    _rewrite(path, STEP_SLOT, struct.pack("<Qdd", 4, 999.0, 99.0))  # ignored in version 1
    got, _ = live_file.read_live(tmp_path)
    assert got is not None and (got.last_progress, got.step, got.scalars) == (100.0, 4, {"loss": 0.25})


WRITER = """
import sys
from pathlib import Path
from sentinel.formats import live_file
live = live_file.LiveWriter.create(Path(sys.argv[1]))
live.update(1.0, 1, {"a": 1.0, "b": -1.0})
print("READY", flush=True)
sys.stdin.readline()
for k in range(2, 400_000):
    live.update(float(k), k, {"a": float(k), "b": -float(k)})
"""


def test_reads_beside_a_live_writer_are_each_one_whole_report(tmp_path: Path) -> None:
    """A writer process hammers the file while it is read: every read is one
    report, never two half ones (both values agree; the step slot, written
    before its record, is as new or newer and agrees with its own time), and
    the reads move forward. (A read that finds every record torn three times
    says only the step, or None, as it may while a writer hammers; a dead
    writer tears none.)"""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "READY"
        child.stdin.write("go\n")
        child.stdin.flush()
        seen, last_step, during = 0.0, 0.0, 0
        while child.poll() is None:  # ends with the writer's bounded loop
            got, _ = live_file.read_live(tmp_path)
            if got is None:
                continue
            assert got.step is not None and got.last_progress == float(got.step) >= last_step
            last_step = got.last_progress
            if not got.scalars:
                continue  # both records torn three times: the step slot alone, as the reader may say
            k = got.scalars["a"]
            assert got.scalars["b"] == -k and last_step >= k >= seen
            seen, during = k, during + 1
        assert child.wait() == 0
        assert during > 10  # read whole while it wrote, not only after
    finally:
        child.kill()
        child.wait()
