"""Run every benchmark and write benchmarks/RESULTS.md afresh.

    python3 benchmarks/run_all.py           # the full run (about 15 minutes on 2 cores)
    python3 benchmarks/run_all.py --tiny    # every script at a tiny size (CI; under 3 minutes)

Any python may start it: it re-runs itself with the project's ``.venv``
(made by ``python3 tests/run.py``), which has the daemon's dependencies and
SwanLab. The full run writes into a scratch copy and replaces RESULTS.md only
when every script succeeded; ``--tiny`` never touches RESULTS.md (its
results go to a scratch file, printed at the end).
"""

from __future__ import annotations

import _common

_common.ensure_venv()

import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

SCRIPTS = ("kill_to_alert", "inproc_cost", "scale", "storm", "storm_channels", "fleet_node_down", "soak",
           "job_alert", "survivors_cost", "fairness", "evidence", "deps_cost", "container_kill", "job_stacks",
           "job_state_cost")
TIMEOUT = {"full": 1800.0, "tiny": 240.0}  # per script: a hung benchmark must not hang CI


def header(tiny: bool, state: str) -> str:
    size = "`--tiny` smoke run (sizes too small for the numbers to mean anything)" if tiny else "full run"
    return "\n".join([
        _common.RESULTS_HEAD.rstrip(), "",
        f"This file: {size} by `{_common.command_line()}`, {state}.", "",
        _common.machine_line(), "",
    ])


def main() -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--only", action="append", choices=SCRIPTS, help="run only these (repeatable)")
    args = p.parse_args()
    started = time.monotonic()
    final = _common.results_path(args)
    work = Path(tempfile.mkdtemp(prefix="sentinel-bench-all-"))
    scratch = work / "RESULTS.md"
    scratch.write_text(header(args.tiny, "in progress"), encoding="utf-8")
    failed: list[str] = []
    env = dict(os.environ, **{_common.PARENT_COMMAND_ENV: _common.command_line()})
    try:
        for name in args.only or SCRIPTS:
            argv = [sys.executable, str(_common.BENCH_DIR / f"{name}.py"), "--results", str(scratch)]
            argv += ["--tiny"] if args.tiny else []
            print(f"\n===== {name} =====", flush=True)
            t = time.monotonic()
            try:
                limit = TIMEOUT["tiny" if args.tiny else "full"]
                code = subprocess.run(argv, env=env, timeout=limit).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
            outcome = "ok" if code == 0 else f"FAILED ({code})"
            print(f"===== {name}: {outcome} in {time.monotonic() - t:.0f} s", flush=True)
            if code != 0:
                failed.append(name)
        elapsed = time.monotonic() - started
        state = f"took {elapsed / 60:.1f} minutes" + (f"; FAILED: {', '.join(failed)}" if failed else "")
        text = scratch.read_text(encoding="utf-8")
        head_end = text.find("<!-- BEGIN ")
        text = header(args.tiny, state) + "\n" + (text[head_end:] if head_end >= 0 else "")
        scratch.write_text(text, encoding="utf-8")
        print("\n" + _common.summary_body(text) + f"\n\nWhole run: {state}.")
        if failed and not args.tiny:
            keep = work / "RESULTS.partial.md"
            shutil.copy(scratch, keep)
            print(f"\n{len(failed)} benchmark(s) failed; {final} left as it was; partial results in {keep}")
            return 1
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(scratch, final.with_name(final.name + ".tmp"))
        os.replace(final.with_name(final.name + ".tmp"), final)
        print(f"\nresults written to {final}")
        return 1 if failed else 0
    finally:
        if not failed or args.tiny:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
