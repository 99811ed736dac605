"""The promises the in-process side makes to the training process: a light
import, no writes from forked children, no error raised into training, and no
api key on disk."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.formats import live_file
from tests.victims.harness import ROOT, Victim, spool_files, swanlab_params, swanlab_python

HEAVY = ("requests", "psutil", "yaml", "watchdog", "swanlab", "swankit", "urllib3")


def _modules_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_sentinel_loads_only_the_standard_library() -> None:
    bare = _modules_after("import sentinel")
    assert "sentinel.training.recorder" not in bare  # the recorder loads with the first run
    modules = _modules_after("import sentinel\nsentinel.watch\nsentinel.Run")
    assert "sentinel.training.watching" in modules and "sentinel.training.recorder" in modules
    tops = {name.split(".")[0] for name in modules}
    assert not tops & set(HEAVY)
    if hasattr(sys, "stdlib_module_names"):  # 3.10+: everything else is stdlib
        ours = ("sentinel", "__main__")
        foreign = sorted(t for t in tops if t not in sys.stdlib_module_names and t not in ours)
        # site customisations of the interpreter itself are not ours to judge
        assert [t for t in foreign if not t.startswith("_")] == [], foreign


def test_swanlab_is_imported_only_when_the_adapter_is_touched(tmp_path: Path) -> None:
    before = _modules_after("import sentinel")
    after = _modules_after("import sentinel\nsentinel.SentinelCallback")
    assert "swanlab" not in before
    assert "swanlab" in after and "sentinel.training.swanlab_adapter" in after
    a_whole_run = f"import sentinel\nwith sentinel.watch(spool_dir={str(tmp_path)!r}) as run:\n run.send('x')"
    assert not {m.split(".")[0] for m in _modules_after(a_whole_run)} & set(HEAVY)


def test_lazy_names_are_listed_and_unknown_names_fail() -> None:
    import sentinel

    public = {"watch", "Run", "SentinelCallback", "BarkCallback", "DingTalkCallback", "SlackCallback"}
    assert public <= set(dir(sentinel))
    with pytest.raises(AttributeError):
        sentinel.NoSuchThing  # noqa: B018


def test_a_forked_child_never_writes_as_the_run(tmp_path: Path) -> None:
    with Victim.watch(tmp_path, "fork", "--steps", "2", "--heartbeat", "0.05").start() as victim:
        victim.ready()
        assert victim.wait() == 0, victim.output()
        assert "child crash must not be recorded" in victim.output()  # the child did crash
        assert victim.expect("AFTER-CHILD") == "AFTER-CHILD -"  # no final record, no message
        final = victim.final()
        assert final.state == "finished"
        assert final.step == 3  # the parent's steps; the child's 999 never landed
        assert victim.progress().step == 3
        assert victim.messages() == []
        assert b"from the child" not in b"".join(p.read_bytes() for p in spool_files(victim.spool))
        live, _ = live_file.read_live(victim.paths.dir)  # the mapping is shared with the child
        assert live is not None and live.step == 3


def assert_reported_once_and_training_went_on(victim: Victim) -> None:
    victim.ready()
    assert victim.wait() == 0, victim.output()
    assert "DONE" in "".join(victim.stdout)
    reports = [line for line in victim.stderr if line.startswith("sentinel: cannot write to the spool")]
    assert len(reports) == 1, victim.output()
    assert "Traceback" not in "".join(victim.stderr)


def test_unwritable_spool_is_reported_once_and_training_goes_on(tmp_path: Path) -> None:
    # Tests run as root, so permissions cannot make a directory unwritable:
    # put the spool under a regular file instead (ENOTDIR on every attempt).
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    spool_dir = blocker / "spool"
    with Victim.watch(tmp_path, "finish", "--steps", "5", "--heartbeat", "0.05", "--send", "hello",
                      spool_dir=spool_dir).start() as victim:
        assert_reported_once_and_training_went_on(victim)


def _no_file_may_grow() -> None:
    # Every write to a file fails with EFBIG, as on a full disk (Python ignores SIGXFSZ).
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_failing_writes_are_reported_once_and_training_goes_on(tmp_path: Path) -> None:
    with Victim.watch(tmp_path, "finish", "--steps", "5", "--heartbeat", "0.05", "--send", "hello",
                      preexec_fn=_no_file_may_grow).start() as victim:
        assert_reported_once_and_training_went_on(victim)
        # Nothing half-written was left behind either.
        assert [p for p in spool_files(victim.spool) if p.stat().st_size == 0] == []


@pytest.mark.parametrize("env_var", swanlab_params())
def test_api_key_never_reaches_the_spool(env_var: str, tmp_path: Path) -> None:
    python = swanlab_python(env_var)
    key = "sentinelTestDummyKey0123"
    with Victim.swanlab(python, tmp_path, "exception", "--heartbeat", "0.05", "--send", "msg",
                        "--probe-api-key", env={"SWANLAB_API_KEY": key}).start() as victim:
        victim.ready()
        assert victim.wait() == 1, victim.output()
        if env_var is None:  # the new API hands settings (with the key) to callbacks
            assert "API_KEY_SEEN yes" in "".join(victim.stdout), victim.output()
        files = spool_files(victim.spool)
        assert {p.name for p in files} >= {"run.json", "beat.json", "final.json", "00000001.json"}
        for path in files:
            assert key.encode() not in path.read_bytes(), path


def test_spool_modes_are_private(tmp_path: Path) -> None:
    with Victim.watch(tmp_path, "finish", "--send", "hi").start() as victim:
        victim.ready()
        assert victim.wait() == 0, victim.output()
        assert victim.spool.stat().st_mode & 0o777 == 0o700
        for path in [victim.paths.dir, victim.paths.messages]:
            assert path.stat().st_mode & 0o777 == 0o700, path
        for path in spool_files(victim.spool):
            assert path.stat().st_mode & 0o777 == 0o600, path


# A log call wakes the heartbeat thread (``Event.set``, its lock held) when
# SIGTERM lands: the handler runs right there, in the same thread, and its
# finish wakes the heartbeat thread too.
SIGTERM_INSIDE_A_WAKE_UP = """
import json, signal, sys
import sentinel
run = sentinel.watch(spool_dir=sys.argv[1], heartbeat_interval=0.1, handle_sigterm=True)
print(json.dumps(run.run_id), flush=True)
with run._recorder._wake._cond:
    signal.raise_signal(signal.SIGTERM)
print("survived", flush=True)
"""


def test_sigterm_inside_the_heartbeats_wake_up_still_ends_the_run(tmp_path: Path) -> None:
    """The process dies by SIGTERM with its run recorded "terminated"; it used
    to wait for a lock its own thread held, for good (found by a real SwanLab
    victim hanging on SIGTERM in CI)."""
    proc = subprocess.run([sys.executable, "-c", SIGTERM_INSIDE_A_WAKE_UP, str(tmp_path / "spool")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -15, proc.stderr
    run_id = json.loads(proc.stdout.splitlines()[0])
    assert "survived" not in proc.stdout
    final = json.loads((tmp_path / "spool" / run_id / "final.json").read_text())
    assert final["state"] == "terminated" and final["signal"] == "SIGTERM"
