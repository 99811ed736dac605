"""``sentinel status`` and ``sentinel history`` by a user who cannot read the
spool (or the daemon's state inside it): a clear failure naming the place and
the permission, never "0 run(s); no daemon is watching" with exit 0."""

from __future__ import annotations

import os
import subprocess

import pytest

from sentinel.formats import safe_json, spool
from tests.cli_helpers import sentinel_env
from tests.users import become, shared_dir, throwaway_user, user_python


@pytest.mark.parametrize("command", ["status", "history"])
def test_a_spool_the_user_cannot_read_is_an_error(command: str) -> None:
    python = user_python()
    with shared_dir() as shared, throwaway_user() as uid:
        private = shared / "spool"
        safe_json.make_private_dir(private)  # root's, 0700: a run of root's lives here
        (private / spool.new_run_id()).mkdir()
        env = sentinel_env(private)
        env["XDG_CONFIG_HOME"] = str(shared / "no-config")
        result = subprocess.run([python, "-m", "sentinel", command, "--spool", str(private)], env=env,
                                cwd=shared, capture_output=True, text=True, timeout=60,
                                preexec_fn=become(uid))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    what = "spool" if command == "status" else "daemon's state directory"
    assert f"sentinel: cannot read the {what} {private}" in result.stderr, result.stderr
    assert str(private) in result.stderr and os.strerror(13) in result.stderr, result.stderr
