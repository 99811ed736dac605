"""Every kind of alert in one table, and the reasons an alert can give.

A row says everything the rest of the project needs about one kind: whether
the process can record it itself (a ``final.json`` state), the run state it
leaves the run in, its emoji, how urgent it is (each channel maps urgency to
its own scale: Bark's level, ...) and its words in every language. The
alert kinds, the final states, the state machine's maps and the channels'
defaults are all derived from here, so adding a kind is one row plus the
code that detects it; ``tests/test_endings.py`` fails if a row lacks a field
or a language lacks a word.

A ``Reason`` is why an alert happened ("killed, no exit record", "no
heartbeat for 40 s"): a code and its parameters, worded per language when a
channel renders the alert, so a Chinese alert is Chinese from headline to
detail. Stdlib only, no project imports: the lowest layer, beside the spool.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from sentinel.rules import LANGUAGES as LANGUAGES  # the languages every row has words in


class Urgency(str, enum.Enum):
    """How much an alert may interrupt; channels map it to their own scale."""

    LOW = "low"  # good news that can wait (shown quietly)
    NORMAL = "normal"  # worth a look
    HIGH = "high"  # something broke: break through Focus modes


@dataclass(frozen=True)
class Words:
    headline: str  # the first words of the alert: "Crashed"
    detail: str  # one short sentence saying what the kind means, when nothing better is known


@dataclass(frozen=True)
class Ending:
    kind: str
    emoji: str
    urgency: Urgency
    words: Mapping[str, Words]  # language -> words; every language in LANGUAGES
    recorded: bool = False  # the process can record it itself (a final.json state)
    run_state: Optional[str] = None  # the run's state after this alert; None: not a transition


ENDINGS: tuple[Ending, ...] = (
    Ending("finished", "✅", Urgency.NORMAL, {
        "en": Words("Finished", "the run ended normally"),
        "zh": Words("训练完成", "运行正常结束"),
    }, recorded=True, run_state="finished"),
    Ending("crashed", "💥", Urgency.HIGH, {
        "en": Words("Crashed", "the run ended with an exception"),
        "zh": Words("训练崩溃", "运行因异常结束"),
    }, recorded=True, run_state="crashed"),
    Ending("aborted", "⛔", Urgency.NORMAL, {
        "en": Words("Aborted", "the run was interrupted"),
        "zh": Words("训练中止", "运行被中断"),
    }, recorded=True, run_state="aborted"),
    Ending("terminated", "🛑", Urgency.HIGH, {
        "en": Words("Terminated", "the run was asked to stop by a signal"),
        "zh": Words("被终止", "运行收到信号后停止"),
    }, recorded=True, run_state="terminated"),
    Ending("killed", "☠️", Urgency.HIGH, {
        "en": Words("Killed", "killed (SIGKILL or crash of the interpreter; no exit record)"),
        "zh": Words("进程被杀死", "进程被杀死（SIGKILL 或解释器崩溃；没有退出记录）"),
    }, run_state="killed"),
    Ending("stalled", "⏸️", Urgency.HIGH, {
        "en": Words("Stalled", "no heartbeat or progress within the stall timeout"),
        "zh": Words("训练卡住", "在卡住超时内没有心跳或进展"),
    }, run_state="stalled"),
    Ending("recovered", "🔄", Urgency.LOW, {
        "en": Words("Recovered", "progress resumed"),
        "zh": Words("已恢复", "训练恢复进展"),
    }, run_state="running"),
    Ending("lost", "❓", Urgency.HIGH, {
        "en": Words("Lost", "the host rebooted or lost power before the run ended"),
        "zh": Words("运行丢失", "主机在运行结束前重启或断电"),
    }, run_state="lost"),
    Ending("message", "💬", Urgency.NORMAL, {
        "en": Words("Message", "a message from the run"),
        "zh": Words("消息", "来自运行的消息"),
    }),
    Ending("test", "🔔", Urgency.NORMAL, {
        "en": Words("Test alert", "a test of this channel"),
        "zh": Words("测试告警", "测试这个渠道"),
    }),
)

BY_KIND: Mapping[str, Ending] = {ending.kind: ending for ending in ENDINGS}
# States a process records in final.json (spool.FinalRecord.state).
FINAL_STATES: tuple[str, ...] = tuple(e.kind for e in ENDINGS if e.recorded)
# Kinds that are run-state transitions (a user may switch them on and off: `alert_on`).
STATE_KINDS: tuple[str, ...] = tuple(e.kind for e in ENDINGS if e.run_state is not None)


def ending(kind: str) -> Ending:
    return BY_KIND[kind]


def words(kind: str, lang: str) -> Words:
    """The words of ``kind`` in ``lang`` (a supported language code)."""
    row = BY_KIND[kind]
    return row.words.get(lang) or row.words["en"]


# ---------------------------------------------------------------- reasons

# code -> language -> template. Templates name their parameters; a parameter
# called ``last_beat`` is a timestamp (or None), worded with BEAT below.
REASONS: Mapping[str, Mapping[str, str]] = {
    "no_exit_record": {
        "en": "killed (SIGKILL or crash of the interpreter; no exit record)",
        "zh": "进程被杀死（SIGKILL 或解释器崩溃；没有退出记录）",
    },
    "oom_kernel": {
        "en": "OOM killer (kernel: {line})",
        "zh": "被 OOM killer 杀死（内核日志：{line}）",
    },
    "oom_cgroup": {
        "en": "OOM killer (its memory cgroup counted an OOM kill: {path})",
        "zh": "被 OOM killer 杀死（内存 cgroup 记录了一次 OOM：{path}）",
    },
    "died_while_down": {
        "en": "died while the daemon was down; {last_beat}",
        "zh": "守护进程停止期间进程已退出；{last_beat}",
    },
    "ended_while_down": {
        "en": "ended while the daemon was down",
        "zh": "守护进程停止期间运行已结束",
    },
    "rebooted": {
        "en": "the machine rebooted while the run was going (its record is from an earlier boot); "
              "{last_beat}",
        "zh": "运行期间主机重启（记录来自上一次开机）；{last_beat}",
    },
    "frozen": {
        "en": "no heartbeat for {silent:.0f}s (stall timeout {timeout:.0f}s): "
              "the process is frozen (stopped, swapping or stuck in the kernel)",
        "zh": "已 {silent:.0f} 秒没有心跳（卡住超时 {timeout:.0f} 秒）：进程被冻结（暂停、换页或卡在内核中）",
    },
    "stuck": {
        "en": "no progress for {silent:.0f}s (stall timeout {timeout:.0f}s) while the heartbeat goes on: "
              "training is stuck",
        "zh": "已 {silent:.0f} 秒没有进展（卡住超时 {timeout:.0f} 秒），心跳仍在：训练卡住了",
    },
    "resumed": {
        "en": "heartbeats and progress resumed",
        "zh": "心跳和进展已恢复",
    },
    # The run directory vanished (rm -rf) while the process lived: no final
    # record can be read, and the exit status of a process that is not the
    # daemon's child is not to be had, so "killed" would be a guess.
    "record_deleted": {
        "en": "ended; its run record was deleted, so how it ended is unknown",
        "zh": "已结束；它的运行记录已被删除，无法得知它是如何结束的",
    },
    # ... while the kernel did report the exit status (the headline says it).
    "record_deleted_exit_known": {
        "en": "its run record was deleted while it ran; the exit status the kernel reported is all "
              "that is known",
        "zh": "运行期间它的运行记录已被删除；只知道内核报告的退出状态",
    },
}
# Reasons that change the alert's first words: the kind's headline would say
# more than is known ("Killed" for a run that may have finished cleanly).
REASON_HEADLINES: Mapping[str, Mapping[str, str]] = {
    "record_deleted": {"en": "Ended (run record deleted)", "zh": "已结束（运行记录被删除）"},
}
OOM_REASONS = frozenset({"oom_kernel", "oom_cgroup"})
BEAT: Mapping[str, Mapping[str, str]] = {
    "en": {"at": "last heartbeat {}", "none": "no heartbeat recorded"},
    "zh": {"at": "最后心跳 {}", "none": "没有心跳记录"},
}


@dataclass(frozen=True)
class Reason:
    """Why an alert happened, as data: worded in each language by ``text``."""

    code: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def text(self, lang: str = "en") -> Optional[str]:
        """The reason in ``lang``; None for a code this version does not know."""
        templates = REASONS.get(self.code)
        if templates is None:
            return None
        template = templates.get(lang) or templates["en"]
        args = dict(self.args)
        if "last_beat" in args:
            args["last_beat"] = beat_text(args["last_beat"], lang)
        try:
            return template.format(**args)
        except (KeyError, ValueError, TypeError, IndexError):  # a record from another version
            return None

    def headline(self, lang: str = "en") -> Optional[str]:
        """The alert's first words if this reason changes them (``REASON_HEADLINES``), else None."""
        words = REASON_HEADLINES.get(self.code)
        return None if words is None else (words.get(lang) or words["en"])

    @property
    def is_oom(self) -> bool:
        return self.code in OOM_REASONS


def beat_text(beat: Any, lang: str = "en") -> str:
    beat_words = BEAT.get(lang) or BEAT["en"]
    if not isinstance(beat, (int, float)) or isinstance(beat, bool) or beat != beat:
        return beat_words["none"]
    return beat_words["at"].format(time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(beat)))
