"""Alert storm: hundreds of runs killed at once, delivered within the services' rate limits.

    python3 benchmarks/storm.py [--tiny]

500 watched runs (real ``/bin/sleep`` processes with spool records, see
``_common.SleepRuns``) are SIGKILLed in one burst while a real daemon
delivers to a fake Slack webhook (1 message per second, 429 beyond) and a
fake DingTalk robot (20 messages per minute, errcode 130101 beyond), both on
127.0.0.1. Every run's alert must arrive — on its own or inside a DingTalk
digest — with no rate-limit answer, and the time to drain each channel is
reported.
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
from typing import Any  # noqa: E402

from _common import SleepRuns, Verdict, fmt, table  # noqa: E402

from tests.daemon_harness import DaemonProcess  # noqa: E402
from tests.fakes import FakeDingTalk, FakeService, FakeSlack  # noqa: E402

FULL = dict(runs=500)
TINY = dict(runs=20)
PREFIX = "storm"
NAME_RE = re.compile(PREFIX + r"[0-9]{5}")


def accepted_texts(fake: FakeService, ok: Any) -> list[tuple[int, str]]:
    """(arrival ns, body text) of every request the fake accepted."""
    out = []
    for r in fake.received():
        if ok(r):
            out.append((r.arrival_ns, r.body.decode("utf-8", "replace")))
    return out


def slack_ok(r: Any) -> bool:
    return r.status == 200


def dingtalk_ok(r: Any) -> bool:
    return r.status == 200 and json.loads(r.answer or b"{}").get("errcode") == 0


def names_in(text: str) -> set[str]:
    return set(NAME_RE.findall(text))


def drain_limit(runs: int) -> float:
    """How long to wait at most: Slack needs a second per alert if not merged."""
    return runs * 1.0 * 1.25 + 60.0


def slack_text(c: dict[str, Any], count: int) -> str:
    if c["digests"]:
        return (f"Slack: the daemon paces the webhook to one message per second and merges a backlog into "
                f"digest messages (up to {c['largest']} alerts in one here), so {count} alerts drained in "
                f"{fmt(c['drain'], 1)} s in {c['accepted']} messages.")
    return ("Slack: the daemon paces the webhook to one message per second and sends each alert on its own "
            f"(no digest), so a storm of N alerts takes about N seconds to drain — {fmt(c['drain'], 0)} s "
            "here: the last alert of a big storm arrives minutes late. What would fix it: a Slack digest "
            "like DingTalk's (merge the due backlog into one message of up to 50 Block Kit blocks).")


def limit_text(slack_c: dict[str, Any], ding_c: dict[str, Any]) -> str:
    if slack_c["limited"] + ding_c["limited"] == 0:
        return "No rate-limit answer from either service (Slack 429 / DingTalk 130101): 0 of each."
    return (f"Rate-limit answers: Slack {slack_c['limited']} × 429, DingTalk {ding_c['limited']} × 130101. "
            "Each was retried after its Retry-After and delivered (nothing lost), but each is a violation: "
            "two requests arrived closer together than the service allows. A pacer that stamps a send "
            "with the time its step began (before the request is built and sent), rather than the time "
            "the answer came, lets that happen whenever one request takes longer to arrive than the next; "
            "pacing from the answer (or with a small margin) fixes it.")


def main() -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    started = time.monotonic()
    info = _common.machine()
    count = (TINY if args.tiny else FULL)["runs"]
    tmp = Path(tempfile.mkdtemp(prefix="sentinel-bench-storm-"))
    channels = {}
    try:
        with FakeSlack() as slack, FakeDingTalk() as robot:
            config = {"ops": {"type": "slack", "webhook_url": slack.webhook_url},
                      "team": {"type": "dingtalk", "webhook_url": robot.webhook_url, "secret": robot.secret}}
            _common.raise_nofile(count + 1024)
            daemon = DaemonProcess(tmp, config, rescan_interval="30s")
            runs = SleepRuns(daemon.spool, PREFIX, count)
            try:
                daemon.start()
                print(f"storm: {count} runs watched; killing all at once", flush=True)
                t0 = time.monotonic_ns()
                for i in range(count):
                    runs.kill(i)
                t_killed = time.monotonic_ns()
                expected = set(runs.names)
                deadline = time.monotonic() + drain_limit(count)
                done: dict[str, int] = {}
                for label, fake, ok in (("DingTalk", robot, dingtalk_ok), ("Slack", slack, slack_ok)):
                    def complete(reqs: list[Any], fake: Any = fake, ok: Any = ok) -> bool:
                        seen: set[str] = set()
                        for r in reqs:
                            if r.status == 200 and ok(r):
                                seen |= names_in(r.body.decode("utf-8", "replace"))
                        return expected <= seen
                    left = max(1.0, deadline - time.monotonic())
                    if fake.wait_for(complete, left):
                        done[label] = max(t for t, _ in accepted_texts(fake, ok)) - t0
                    print(f"  {label}: {'drained' if label in done else 'NOT drained'}", flush=True)
                for i in range(count):
                    runs.reap(i)
            finally:
                try:
                    if daemon.alive():
                        daemon.stop(60)
                finally:
                    runs.close()
            for label, fake, ok in (("Slack", slack, slack_ok), ("DingTalk", robot, dingtalk_ok)):
                texts = accepted_texts(fake, ok)
                seen: dict[str, int] = {}
                per_message = []
                for arrival, text in texts:
                    found = names_in(text)
                    per_message.append(len(found))
                    for name in found:
                        seen.setdefault(name, arrival)
                latencies = sorted((seen[n] - t0) / 1e9 for n in seen)
                rejected = [r for r in fake.received() if not ok(r)]
                limited = sum(1 for r in rejected if r.status == 429 or b"130101" in (r.answer or b""))
                channels[label] = dict(
                    requests=len(fake.received()), accepted=len(texts), delivered=len(seen),
                    missing=len(expected - set(seen)), limited=limited,
                    other_rejected=len(rejected) - limited,
                    digests=sum(1 for n in per_message if n > 1), largest=max(per_message or [0]),
                    first=latencies[0] if latencies else float("nan"),
                    median=latencies[len(latencies) // 2] if latencies else float("nan"),
                    drain=done.get(label, float("nan")) / 1e9 if label in done else float("nan"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    kill_ms = (t_killed - t0) / 1e6
    rows = []
    for label, c in channels.items():
        rows.append((label, c["requests"], c["accepted"], c["digests"], c["largest"],
                     f"{c['delivered']}/{count}",
                     c["missing"], c["limited"], c["other_rejected"], fmt(c["first"]), fmt(c["median"]),
                     fmt(c["drain"])))
    slack_c, ding_c = channels["Slack"], channels["DingTalk"]
    body = "\n".join([
        "### Results", "",
        table(["channel", "requests", "accepted", "digests", "alerts in largest", "runs alerted", "missing",
               "rate-limited (429 / 130101)", "other errors", "first alert s", "median alert s",
               "drained after s"], rows), "",
        f"All {count} processes were killed within {kill_ms:.1f} ms; times are from the first kill. "
        "A run counts as alerted when its name appears in a message the fake accepted (DingTalk digests "
        "list several runs each).", "",
        slack_text(slack_c, count), "",
        limit_text(slack_c, ding_c), "",
        "DingTalk: once the backlog exceeds what the robot's 20-per-minute budget allows, the due alerts are "
        "merged into digests (up to 50 alerts or 20,000 bytes each).", "",
    ])
    limited = slack_c["limited"] + ding_c["limited"]
    verdicts = [
        Verdict("storm", f"every alert delivered, {count} runs killed at once (Slack)",
                f"{slack_c['delivered']}/{count}", "all", slack_c["missing"] == 0,
                f"drained after {fmt(slack_c['drain'], 1)} s in {slack_c['accepted']} messages "
                f"({slack_c['digests']} digests)"),
        Verdict("storm", f"every alert delivered, {count} runs killed at once (DingTalk)",
                f"{ding_c['delivered']}/{count}", "all", ding_c["missing"] == 0,
                f"drained after {fmt(ding_c['drain'], 1)} s in {ding_c['accepted']} messages "
                f"({ding_c['digests']} digests)"),
        Verdict("storm", "rate-limit violations (Slack 429 + DingTalk 130101)",
                str(limited), "0", limited == 0,
                "" if limited == 0 else "requests arrived closer than the limit: see Alert storm"),
    ]
    _common.publish(args, "storm", "4. Alert storm", body, verdicts, started, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
