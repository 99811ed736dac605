"""A Chinese channel speaks Chinese from headline to detail, also for what the daemon itself saw."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from sentinel.channels.bark import render_bark
from sentinel.channels.dingtalk import render_markdown
from sentinel.model.alerts import Alert, AlertKind
from tests.daemon_harness import DaemonProcess
from tests.fakes import FakeBark
from tests.victims.harness import Victim, wait_for

RUN_NAME = "中文实验"
# Names that stay as they are in Chinese text (a signal's name).
NAMES = {"SIGKILL"}
ENGLISH_WORD = re.compile(r"[A-Za-z]{2,}")


def zh_title(kind: AlertKind, signal: str = "") -> str:
    alert = Alert(alert_id="x", kind=kind, created=0.0, run_name=RUN_NAME, signal=signal or None)
    return render_bark(alert, "zh").title


def english_words(text: str) -> set[str]:
    return set(ENGLISH_WORD.findall(text)) - NAMES


def test_a_zh_channel_words_kill_and_stall_alerts_in_chinese(tmp_path: Path) -> None:
    with FakeBark() as bark, DaemonProcess(
        tmp_path, {"phone": {"type": "bark", "url": bark.key_url, "language": "zh"}}
    ) as daemon:
        v = Victim.watch(tmp_path, "sleep-forever", "--name", RUN_NAME, "--heartbeat", "0.1",
                         "--stall-timeout", "1", spool_dir=daemon.spool).start()
        with v:
            run_id = v.ready()
            v.expect("RUNNING")
            v.signal(signal.SIGSTOP)  # frozen: the daemon words the stall's reason itself
            wait_for(lambda: any(p.get("title") == zh_title(AlertKind.STALLED) for p in bark.pushes), 30,
                     what="a Chinese stall push")
            v.signal(signal.SIGCONT)
            wait_for(lambda: any(p.get("title") == zh_title(AlertKind.RECOVERED) for p in bark.pushes), 30,
                     what="a Chinese recovery push")
            v.kill()  # SIGKILL: no exit record; the kernel names the signal, the daemon says why
            killed = wait_for(lambda: next((p for p in bark.pushes
                                            if p.get("title") == zh_title(AlertKind.KILLED, "SIGKILL")),
                                           None), 30,
                              what="a Chinese kill push")
        daemon.stop()
    # Headline to detail: the title, then the body's first line (why it was killed).
    detail = killed["body"].splitlines()[0]
    assert detail == "被 SIGKILL 杀死；没有退出记录"
    assert not english_words(killed["title"].replace(RUN_NAME, "") + detail), killed
    # The stall's cause as every channel shows it (DingTalk lists the facts): Chinese too.
    stalled, recovered, dead = daemon.journal(run_id)
    assert [a.kind for a in (stalled, recovered, dead)] == [AlertKind.STALLED, AlertKind.RECOVERED,
                                                            AlertKind.KILLED]
    cause = next(line for line in render_markdown(stalled, "zh")[1].splitlines() if "**原因**" in line)
    assert "没有心跳" in cause and not english_words(cause), cause
    resumed = next(line for line in render_markdown(recovered, "zh")[1].splitlines() if "**原因**" in line)
    assert "心跳和进展已恢复" in resumed and not english_words(resumed), resumed
    # The journal keeps the English text for logs and older readers.
    assert "the process is frozen" in (stalled.detail or "") and dead.signal == "SIGKILL"
