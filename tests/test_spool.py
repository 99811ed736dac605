"""The spool format: atomic writes, hostile-input-safe reads, the location rule."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sentinel.formats import safe_json, spool
from sentinel.host.procid import ProcessIdentity, boot_id, start_ticks
from tests.victims.harness import identity_of
from tests.waiting import wait_for


def _run_record(run_id: str, **overrides) -> spool.RunRecord:
    ident = ProcessIdentity.current()
    values = dict(
        run_id=run_id, pid=ident.pid, start_ticks=ident.start_ticks, boot_id=ident.boot_id,
        hostname="host", uid=os.getuid(), user="me", cmdline=["python", "train.py"], cwd="/tmp",
        started=time.time(), heartbeat_interval=10.0, name="exp", labels={"project": "p"},
    )
    values.update(overrides)
    return spool.RunRecord(**values)


def test_run_record_round_trips(tmp_path: Path) -> None:
    run_id = spool.new_run_id()
    record = _run_record(run_id, channels=["phone", {"type": "bark", "key": "k"}])
    safe_json.write_json(tmp_path / "run.json", record.to_dict())
    loaded, st = spool.read_run(tmp_path / "run.json")
    assert loaded == record
    assert stat.S_IMODE(st.st_mode) == 0o600


def test_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    for seq in range(3):
        safe_json.write_json(tmp_path / "beat.json", spool.Progress(beat=time.time(), seq=seq).to_dict())
    assert os.listdir(tmp_path) == ["beat.json"]
    assert spool.read_progress(tmp_path / "beat.json").seq == 2


def test_durable_write_round_trips(tmp_path: Path) -> None:
    final = spool.FinalRecord(state="crashed", ended=1.0, exit_code=1, error="boom")
    safe_json.write_json(tmp_path / "final.json", final.to_dict(), durable=True)
    assert spool.read_final(tmp_path / "final.json") == final


def test_error_tail_is_capped_keeping_the_end() -> None:
    error = "x" * 20000 + "RuntimeError: the real cause"
    data = spool.FinalRecord(state="crashed", ended=1.0, error=error).to_dict()
    assert len(data["error"].encode()) <= spool.ERROR_TAIL_BYTES
    assert data["error"].endswith("RuntimeError: the real cause")


def test_scalars_are_capped_and_finite() -> None:
    scalars = {f"k{i}": i for i in range(40)}
    scalars.update({"nan": float("nan"), "text": "abc"})
    capped = spool.cap_scalars(scalars)
    assert len(capped) == spool.MAX_SCALARS
    assert all(isinstance(v, float) for v in capped.values())
    assert "nan" not in spool.cap_scalars({"nan": float("nan"), "inf": float("inf")})


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{\"v\": 1, \"beat\": 1.0", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"v": 99, "beat": 1.0, "seq": 1}', "unknown format version"),
        (b'{"v": 1, "seq": 1}', "missing field"),
        (b'{"v": 1, "beat": "soon", "seq": 1}', "beat must be a number"),
    ],
)
def test_malformed_progress_is_rejected_with_a_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "beat.json"
    path.write_bytes(content)
    with pytest.raises(safe_json.SpoolFormatError, match=reason):
        spool.read_progress(path)


def test_oversized_file_is_rejected_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(b" " * (safe_json.MAX_FILE_BYTES + 1))
    with pytest.raises(safe_json.SpoolFormatError, match="too large"):
        safe_json.read_json(path)


def test_symlink_is_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    safe_json.write_json(target, spool.Progress(beat=1.0, seq=1).to_dict())
    link = tmp_path / "beat.json"
    link.symlink_to(target)
    with pytest.raises(safe_json.SpoolFormatError, match="symlink"):
        spool.read_progress(link)


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "run.json"
    os.mkfifo(fifo)
    with pytest.raises(safe_json.SpoolFormatError, match="not a regular file"):
        safe_json.read_json(fifo)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        spool.read_final(tmp_path / "final.json")


def test_run_record_validation_names_the_field() -> None:
    data = _run_record(spool.new_run_id()).to_dict()
    data["pid"] = "1234"
    with pytest.raises(safe_json.SpoolFormatError, match="pid"):
        spool.RunRecord.from_dict(data)
    data = _run_record(spool.new_run_id()).to_dict()
    data["run_id"] = "../../etc"
    with pytest.raises(safe_json.SpoolFormatError, match="run_id"):
        spool.RunRecord.from_dict(data)


def test_final_state_must_be_known() -> None:
    with pytest.raises(safe_json.SpoolFormatError, match="state must be one of"):
        spool.FinalRecord.from_dict({"v": 1, "state": "exploded", "ended": 1.0})


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    progress = spool.Progress.from_dict({"v": 1, "beat": 2.0, "seq": 3, "gpu_temp": 80})
    assert progress == spool.Progress(beat=2.0, seq=3)


def test_run_ids_are_recognised() -> None:
    run_id = spool.new_run_id(pid=4242, now=0)
    assert run_id.startswith("19700101T000000-4242-")
    assert spool.is_run_id(run_id)
    for name in (".daemon", "daemon.json", "../x", "19700101T000000-1-XYZXYZ", ""):
        assert not spool.is_run_id(name)


def test_messages_are_listed_in_order(tmp_path: Path) -> None:
    paths = spool.RunPaths(tmp_path, spool.new_run_id())
    safe_json.make_private_dir(paths.messages)
    for seq in (10, 2, 7):
        safe_json.write_json(paths.message(seq), spool.Message(seq=seq, time=1.0, text=f"m{seq}").to_dict())
    (paths.messages / ".00000001.json.tmp").write_text("partial")
    (paths.messages / "notes.txt").write_text("ignored")
    listed = spool.list_messages(paths)
    assert [seq for seq, _ in listed] == [2, 7, 10]
    assert spool.read_message(listed[0][1]).text == "m2"


def test_make_private_dir_refuses_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(NotADirectoryError):
        safe_json.make_private_dir(tmp_path / "link")
    safe_json.make_private_dir(tmp_path / "new" / "run")
    assert stat.S_IMODE(os.lstat(tmp_path / "new" / "run").st_mode) == 0o700


def test_spool_location_rule(tmp_path: Path) -> None:
    assert spool.spool_dir({"SENTINEL_SPOOL": str(tmp_path / "s")}) == tmp_path / "s"
    if not spool.SYSTEM_SPOOL.is_dir():
        assert spool.spool_dir({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "sentinel" / "spool"
        assert spool.spool_dir({"HOME": str(tmp_path)}) == tmp_path / ".local/state/sentinel/spool"


def test_process_identity_tells_a_reused_pid_apart() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        ident = ProcessIdentity.of(child.pid)
        assert ident is not None and ident.is_running()
        assert ident.boot_id == boot_id() and ident.start_ticks == start_ticks(child.pid)
        impostor = ProcessIdentity(child.pid, ident.start_ticks + 1, ident.boot_id)
        assert not impostor.is_running()
        other_boot = ProcessIdentity(child.pid, ident.start_ticks, "another-boot")
        assert not other_boot.is_running()
    finally:
        child.communicate(b"")
    assert not ident.is_running()


def test_zombie_is_not_running() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = identity_of(child)
    # The child exits but stays a zombie until we reap it.
    wait_for(lambda: not ident.is_running(), 30, what="the zombie to count as not running")
    assert not ident.is_running()
    assert json.dumps(ident.__dict__)  # identity is plain data
    child.wait()
