"""SentinelCallback's pieces against the installed (newest) SwanLab: base
class, what it reads from settings, and how it digests scalar flushes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
import swanlab

from sentinel.formats import spool
from sentinel.training import recorder
from tests.waiting import wait_for


@pytest.fixture
def callback(tmp_path: Path) -> Iterator[object]:
    from sentinel import SentinelCallback

    cb = SentinelCallback(spool_dir=tmp_path / "spool", heartbeat_interval=0.05, handle_sigterm=False)
    yield cb
    if cb.recorder is not None:
        cb.recorder.finish()


def _settings(mode: str) -> SimpleNamespace:
    return SimpleNamespace(
        mode=mode, api_key="sk-must-never-be-read", web_host="https://swanlab.cn",
        project=SimpleNamespace(name="proj", workspace="team"),
        experiment=SimpleNamespace(name="exp", description="desc"),
        run=SimpleNamespace(id="abcd1234"),
    )


def test_the_newest_base_is_chosen() -> None:
    from sentinel import SentinelCallback
    from sentinel.training.swanlab_adapter import CALLBACK_API

    assert CALLBACK_API == "callback"
    assert issubclass(SentinelCallback, swanlab.Callback)
    assert SentinelCallback().name == "sentinel.SentinelCallback"


def test_labels_pick_named_fields_only() -> None:
    from sentinel.training.swanlab_adapter import labels_from_settings

    offline = labels_from_settings(_settings("offline"), "/proj/abcd1234")
    assert offline == {"project": "proj", "workspace": "team", "experiment": "exp", "description": "desc",
                       "swanlab_run_id": "abcd1234", "mode": "offline"}
    online = labels_from_settings(_settings("online"), "/alice/proj/abcd1234")
    assert online["url"] == "https://swanlab.cn/@alice/proj/runs/abcd1234"
    assert "sk-must-never-be-read" not in repr(online)


def test_initialized_run_is_recorded_without_the_api_key(callback: object, tmp_path: Path) -> None:
    callback.on_run_initialized(tmp_path, "/alice/proj/abcd1234", settings=_settings("online"))
    rec = callback.recorder
    record, _ = spool.read_run(rec.paths.run)
    assert record.source == "swanlab"
    assert record.labels["url"] == "https://swanlab.cn/@alice/proj/runs/abcd1234"
    assert b"sk-must-never-be-read" not in rec.paths.run.read_bytes()


def test_scalar_flush_gives_logged_time_and_skips_system_metrics(callback: object, tmp_path: Path) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp
    from swanlab.proto.swanlab.metric.data.v1.data_pb2 import ScalarRecord, ScalarValue

    def record(key: str, step: int, seconds: int, value: float) -> ScalarRecord:
        return ScalarRecord(key=key, step=step, timestamp=Timestamp(seconds=seconds, nanos=500_000_000),
                            value=ScalarValue(number=value))

    callback.on_run_initialized(tmp_path, "/proj/abcd1234", settings=_settings("offline"))
    callback.on_scalar_flush([record("loss", 4, 1_000, 0.5), record("loss", 5, 1_010, 0.25),
                              record("__swanlab__.cpu.pct", 99, 2_000, 77.0)])
    rec = callback.recorder
    wait_for(lambda: spool.read_progress(rec.paths.beat).step == 5, what="step 5")
    beat = spool.read_progress(rec.paths.beat)
    assert beat.last_progress == pytest.approx(1_010.5)
    assert beat.scalars == {"loss": 0.25}
    callback.on_scalar_flush([record("__swanlab__.gpu.mem", 100, 3_000, 1.0)])  # monitor only: no progress
    seq = beat.seq
    wait_for(lambda: spool.read_progress(rec.paths.beat).seq > seq + 1, what="more beats")
    assert spool.read_progress(rec.paths.beat).last_progress == pytest.approx(1_010.5)


def test_hooks_never_raise(callback: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder, "_reported", set())
    callback.on_log({"loss": 1.0}, 1)  # before any run: ignored
    callback.on_scalar_flush([object()])  # nothing to flush into yet
    callback.on_run_initialized(None, None, settings=None)  # a SwanLab that passes nothing
    callback.on_scalar_flush([object()])  # malformed records
    callback.on_run_finished("crashed", "Traceback ...\nValueError: x")
    assert callback.recorder is not None and callback.recorder.final.state == "crashed"
    assert "hook-on_scalar_flush" in recorder._reported
