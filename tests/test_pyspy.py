"""py-spy dumps of a process without the recorder, as the daemon takes them:
another user's real process, read under the unit's capabilities; without
CAP_SYS_PTRACE, or without py-spy, the answer says why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

import pytest

from sentinel.daemon import pyspy
from sentinel.host.procid import ProcessIdentity
from tests.unit_caps import UnitPrivileges, unavailable, unit_privileges
from tests.users import become, other_uid, user_python  # noqa: F401 (fixture)
from tests.victims.harness import ROOT, missing
from tests.waiting import wait_for

VICTIM = "import sys\ndef straggle():\n    sys.stdin.read()\nprint('ready', flush=True)\nstraggle()\n"
# The daemon's side, in a process of its own so that it runs with exactly the unit's privileges.
PROBE = ("import json, sys\nfrom sentinel.daemon import pyspy\n"
         "from sentinel.host.procid import ProcessIdentity\n"
         "dump, why = pyspy.dump(ProcessIdentity.of(int(sys.argv[1])))\n"
         "where = dump.main.where.short if dump and dump.main and dump.main.where else None\n"
         "print(json.dumps([where, why]))\n")


@pytest.fixture
def victim(other_uid: int) -> Iterator[subprocess.Popen[str]]:  # noqa: F811
    why = unavailable()
    if why:
        missing(why)
    proc = subprocess.Popen([user_python(), "-c", VICTIM], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, preexec_fn=become(other_uid))
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def probe(privileges: UnitPrivileges, pid: int, env: Optional[dict[str, str]] = None) -> list[Optional[str]]:
    result = subprocess.run([*privileges.command(), sys.executable, "-c", PROBE, str(pid)],
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))
    assert result.returncode == 0, result.stderr
    answer: list[Optional[str]] = json.loads(result.stdout)
    return answer


def test_the_unit_reads_another_users_stacks(victim: subprocess.Popen[str]) -> None:
    assert probe(unit_privileges(), victim.pid) == ["straggle (<string>:3)", ""]


def test_without_cap_sys_ptrace_it_says_so(victim: subprocess.Popen[str]) -> None:
    assert probe(unit_privileges().without("CAP_SYS_PTRACE"), victim.pid) == [None, pyspy.NO_PTRACE]


def test_without_py_spy_it_says_so(victim: subprocess.Popen[str], tmp_path: Path) -> None:
    absent = str(tmp_path / "nowhere" / "py-spy")
    assert probe(unit_privileges(), victim.pid, {pyspy.ENV_BINARY: absent}) == [None, pyspy.NOT_INSTALLED]


def test_the_binary_is_found_next_to_the_interpreter() -> None:
    assert pyspy.binary() == str(Path(sys.executable).parent / "py-spy")


def test_a_gone_process_is_not_dumped() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = ProcessIdentity.of(proc.pid)
    proc.wait()
    wait_for(lambda: not Path(f"/proc/{proc.pid}").exists(), 10, what="the process reaped")
    assert ident is not None and pyspy.dump(ident) == (None, "the process is gone")


def test_the_output_is_parsed_made_printable_and_redacted() -> None:
    raw = (b'Process 7: python t.py\nPython v3.11.7 (/usr/bin/python3.11)\n\n'
           b'Thread 8 (idle): "Thread-1"\n    run (/usr/lib/python3.11/threading.py:982)\n'
           b'Thread 7 (active): "MainThread"\n    fetch\x1b[2J (/srv/get?token=s3cr3tvalue:12)\n'
           b'    <module> (/srv/t.py:30)\n')
    dump = pyspy.parse(raw)
    main = dump.main
    assert main is not None and main.ident == "7" and len(dump.threads) == 2
    assert [f.function for f in main.frames] == ["fetch\\x1b[2J", "<module>"]
    assert main.frames[0].path == "/srv/get?token=***" and main.frames[0].line == 12
    assert "s3cr3tvalue" not in dump.text()


def test_dumps_beyond_the_hosts_cap_are_refused_with_the_reason(victim: subprocess.Popen[str]) -> None:
    """Every slot is taken (as by that many dumps under way for other stalled
    runs): the next dump waits its while, then says py-spy is busy; once a
    slot is free, it dumps again."""
    ident = ProcessIdentity.of(victim.pid)
    assert ident is not None
    taken = 0
    try:
        while pyspy.SLOTS.acquire(blocking=False):
            taken += 1
        assert taken == pyspy.MAX_RUNNING
        assert pyspy.dump(ident) == (None, pyspy.BUSY)
        pyspy.SLOTS.release()
        taken -= 1
        dump, why = pyspy.dump(ident)
        assert why == "" and dump is not None and dump.main is not None
    finally:
        for _ in range(taken):
            pyspy.SLOTS.release()
