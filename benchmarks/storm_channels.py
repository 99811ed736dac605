"""Alert storm on the newer channels: runs killed at once, each rate-limited service within its limit.

    python3 benchmarks/storm_channels.py [--tiny]

200 watched runs (real ``/bin/sleep`` processes with spool records, see
``_common.SleepRuns``) are SIGKILLed in one burst while a real daemon
delivers every alert to five strict fakes on 127.0.0.1 at once, each
enforcing its service's published limit: a Lark bot (5 a second, 100 a
minute: code 11232), a WeCom robot (20 a minute: errcode 45009), a Discord
webhook (5 per 2 seconds: 429), a Telegram chat (1 a second, 20 a minute:
429) and ntfy (a bucket of 60 refilled one every 5 seconds: 429). Every
run's alert must arrive — on its own or inside a digest — with no
rate-limit answer; the time to drain each channel is reported.
"""

from __future__ import annotations

import _common

_common.ensure_venv()

import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

from _common import SleepRuns, Verdict, fmt, table  # noqa: E402

from tests.daemon_harness import DaemonProcess  # noqa: E402
from tests.fakes.discord import FakeDiscord  # noqa: E402
from tests.fakes.lark import FakeLark  # noqa: E402
from tests.fakes.ntfy import FakeNtfy  # noqa: E402
from tests.fakes.server import RecordedRequest  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402
from tests.fakes.wecom import FakeWeCom  # noqa: E402

FULL = dict(runs=200)
TINY = dict(runs=20)
PREFIX = "chstorm"
NAME_RE = re.compile(PREFIX + r"[0-9]{5}")


def _answer(r: RecordedRequest) -> Any:
    try:
        return json.loads(r.answer or b"{}")
    except ValueError:
        return {}


# label -> (accepted?, rate-limit answer?)
RULES: dict[str, tuple[Callable[[RecordedRequest], bool], Callable[[RecordedRequest], bool]]] = {
    "Lark": (lambda r: r.status == 200 and _answer(r).get("code") == 0,
             lambda r: _answer(r).get("code") == 11232),
    "WeCom": (lambda r: r.status == 200 and _answer(r).get("errcode") == 0,
              lambda r: _answer(r).get("errcode") == 45009),
    "Discord": (lambda r: r.status in (200, 204), lambda r: r.status == 429),
    "Telegram": (lambda r: r.status == 200 and _answer(r).get("ok") is True, lambda r: r.status == 429),
    "ntfy": (lambda r: r.status == 200, lambda r: r.status == 429),
}
LIMITS = {"Lark": "5/s, 100/min → 11232", "WeCom": "20/min → 45009", "Discord": "5 per 2 s → 429",
          "Telegram": "1/s, 20/min → 429", "ntfy": "burst 60, +1 per 5 s → 429"}


def main() -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    started = time.monotonic()
    info = _common.machine()
    count = (TINY if args.tiny else FULL)["runs"]
    tmp = Path(tempfile.mkdtemp(prefix="sentinel-bench-chstorm-"))
    results: dict[str, dict[str, Any]] = {}
    try:
        with FakeLark() as lark, FakeWeCom() as wecom, FakeDiscord() as discord, FakeTelegram() as telegram, \
                FakeNtfy() as ntfy:
            fakes = {"Lark": lark, "WeCom": wecom, "Discord": discord, "Telegram": telegram, "ntfy": ntfy}
            config = {
                "lark": {"type": "lark", "webhook_url": lark.webhook_url, "secret": lark.secret},
                "wecom": {"type": "wecom", "webhook_url": wecom.webhook_url},
                "discord": {"type": "discord", "webhook_url": discord.webhook_url},
                "telegram": {"type": "telegram", "bot_token": telegram.token, "chat_id": telegram.chat_id,
                             "api_url": telegram.api_url},
                "ntfy": {"type": "ntfy", "url": ntfy.topic_url},
            }
            _common.raise_nofile(count + 1024)
            daemon = DaemonProcess(tmp, config, rescan_interval="30s")
            runs = SleepRuns(daemon.spool, PREFIX, count)
            expected = set(runs.names)
            done: dict[str, int] = {}
            try:
                daemon.start()
                print(f"storm: {count} runs watched; killing all at once", flush=True)
                t0 = time.monotonic_ns()
                for i in range(count):
                    runs.kill(i)
                deadline = time.monotonic() + 600.0
                for label, fake in fakes.items():
                    ok = RULES[label][0]

                    def complete(reqs: list[RecordedRequest], ok: Any = ok) -> bool:
                        seen: set[str] = set()
                        for r in reqs:
                            if r.status and ok(r):
                                seen |= set(NAME_RE.findall(r.body.decode("utf-8", "replace")))
                        return expected <= seen

                    if fake.wait_for(complete, max(1.0, deadline - time.monotonic())):
                        done[label] = max(r.arrival_ns for r in fake.received() if ok(r)) - t0
                    print(f"  {label}: {'drained' if label in done else 'NOT drained'}", flush=True)
                for i in range(count):
                    runs.reap(i)
            finally:
                try:
                    if daemon.alive():
                        daemon.stop(60)
                finally:
                    runs.close()
            for label, fake in fakes.items():
                ok, limited = RULES[label]
                accepted = [r for r in fake.received() if ok(r)]
                seen: set[str] = set()
                largest = 0
                for r in accepted:
                    names = set(NAME_RE.findall(r.body.decode("utf-8", "replace")))
                    largest = max(largest, len(names))
                    seen |= names
                rejected = [r for r in fake.received() if not ok(r)]
                results[label] = dict(
                    requests=len(fake.received()), accepted=len(accepted), delivered=len(seen & expected),
                    missing=len(expected - seen), limited=sum(1 for r in rejected if limited(r)),
                    other=sum(1 for r in rejected if not limited(r)), largest=largest,
                    drain=done[label] / 1e9 if label in done else float("nan"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = [(label, LIMITS[label], c["requests"], c["accepted"], c["largest"], f"{c['delivered']}/{count}",
             c["missing"], c["limited"], c["other"], fmt(c["drain"], 1)) for label, c in results.items()]
    body = "\n".join([
        "### Results", "",
        table(["channel", "service limit (fake's answer beyond)", "requests", "accepted",
               "alerts in largest", "runs alerted", "missing", "rate-limited answers", "other errors",
               "drained after s"], rows), "",
        f"All {count} processes were killed in one burst; one daemon delivered every alert to all five "
        "channels at once. A run counts as alerted when its name appears in a message the fake accepted "
        "(digests list several runs each). Each channel paces below its service's limit, measured from "
        "the answers (``rate_limit`` / ``min_interval`` of its class), and merges the due backlog into "
        "digests when sending it one by one would exceed the limit or take more than 10 s.", "",
    ])
    limited_total = sum(c["limited"] for c in results.values())
    verdicts = [Verdict("storm_channels", f"every alert delivered, {count} runs killed at once ({label})",
                        f"{c['delivered']}/{count}", "all", c["missing"] == 0,
                        f"drained after {fmt(c['drain'], 1)} s in {c['accepted']} messages")
                for label, c in results.items()]
    verdicts.append(Verdict("storm_channels", "rate-limit violations (Lark, WeCom, Discord, Telegram, ntfy)",
                            str(limited_total), "0", limited_total == 0,
                            "" if limited_total == 0 else "see Alert storm, newer channels"))
    _common.publish(args, "storm_channels", "5. Alert storm, newer channels", body, verdicts, started, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
