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

from sentinel.common.rules import LANGUAGES as LANGUAGES  # the languages every row has words in


class Urgency(str, enum.Enum):
    """How much an alert may interrupt; channels map it to their own scale
    (Bark's level, ntfy's priority)."""

    LOW = "low"  # good news that can wait (shown quietly)
    NORMAL = "normal"  # worth a look
    HIGH = "high"  # something broke: break through Focus modes


class Outcome(str, enum.Enum):
    """What the kind says about the run's work."""

    SUCCESS = "success"  # it did what it was started for (or got back to it)
    FAILURE = "failure"  # it did not, or will not without someone
    NEUTRAL = "neutral"  # no verdict: a message, a test


class Tone(str, enum.Enum):
    """The colour a channel gives the kind (each maps it to its own palette:
    Discord's embed colour, WeCom's font colour, Apprise's notify type)."""

    GOOD = "good"
    INFO = "info"
    WARNING = "warning"
    BAD = "bad"


class Ping(str, enum.Enum):
    """What a healthchecks.io check hears about a run (sentinel.fleet.healthchecks)."""

    SUCCESS = "success"  # the bare ping URL: the check is up
    FAIL = "fail"  # /fail, or /<exit code> when the code is known: the check is down
    LOG = "log"  # /log: said in the check's log, its state unchanged
    NONE = "none"  # not about a run's life: nothing is pinged


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
    outcome: Outcome
    tone: Tone
    tag: str  # its ntfy tag: an emoji short code (ntfy shows it before the title)
    severity: str  # Alertmanager's ``severity`` label: critical | warning | info
    ping: Ping = Ping.NONE
    recorded: bool = False  # a final.json state: the process (or `sentinel run` for it) records it
    run_state: Optional[str] = None  # the run's state after this alert; None: not a transition
    ends_run: bool = True  # a run in ``run_state`` is over (False: it may still change)


_CRITICAL, _WARNING, _INFO = "critical", "warning", "info"
SEVERITIES = (_CRITICAL, _WARNING, _INFO)

# A page (critical) is for a run that died or lost its machine and needs someone
# now; a run that was stopped on purpose (terminated, aborted, cancelled) or
# that is alive but silent (stalled) is a warning: someone should look, and a
# stall may still recover on its own.
ENDINGS: tuple[Ending, ...] = (
    Ending("finished", "✅", Urgency.NORMAL, {
        "en": Words("Finished", "the run ended normally"),
        "zh": Words("训练完成", "运行正常结束"),
    }, Outcome.SUCCESS, Tone.GOOD, "white_check_mark", _INFO, Ping.SUCCESS,
        recorded=True, run_state="finished"),
    Ending("crashed", "💥", Urgency.HIGH, {
        "en": Words("Crashed", "the run ended with an exception"),
        "zh": Words("训练崩溃", "运行因异常结束"),
    }, Outcome.FAILURE, Tone.BAD, "boom", _CRITICAL, Ping.FAIL, recorded=True, run_state="crashed"),
    Ending("aborted", "⛔", Urgency.NORMAL, {
        "en": Words("Aborted", "the run was interrupted"),
        "zh": Words("训练中止", "运行被中断"),
    }, Outcome.FAILURE, Tone.BAD, "no_entry", _WARNING, Ping.FAIL, recorded=True, run_state="aborted"),
    Ending("terminated", "🛑", Urgency.HIGH, {
        "en": Words("Terminated", "the run was asked to stop by a signal"),
        "zh": Words("被终止", "运行收到信号后停止"),
    }, Outcome.FAILURE, Tone.BAD, "stop_sign", _WARNING, Ping.FAIL, recorded=True, run_state="terminated"),
    Ending("killed", "☠️", Urgency.HIGH, {
        "en": Words("Killed", "killed (SIGKILL or crash of the interpreter; no exit record)"),
        "zh": Words("进程被杀死", "进程被杀死（SIGKILL 或解释器崩溃；没有退出记录）"),
    }, Outcome.FAILURE, Tone.BAD, "skull", _CRITICAL, Ping.FAIL, recorded=True, run_state="killed"),
    Ending("stalled", "⏸️", Urgency.HIGH, {
        "en": Words("Stalled", "no heartbeat or progress within the stall timeout"),
        "zh": Words("训练卡住", "在卡住超时内没有心跳或进展"),
    }, Outcome.FAILURE, Tone.WARNING, "hourglass", _WARNING, Ping.LOG, run_state="stalled", ends_run=False),
    Ending("recovered", "🔄", Urgency.LOW, {
        "en": Words("Recovered", "progress resumed"),
        "zh": Words("已恢复", "训练恢复进展"),
    }, Outcome.SUCCESS, Tone.GOOD, "arrows_counterclockwise", _INFO, Ping.LOG,
        run_state="running", ends_run=False),
    Ending("lost", "❓", Urgency.HIGH, {
        "en": Words("Lost", "the host rebooted or lost power before the run ended"),
        "zh": Words("运行丢失", "主机在运行结束前重启或断电"),
    }, Outcome.FAILURE, Tone.BAD, "question", _CRITICAL, Ping.FAIL, run_state="lost"),
    # Scheduler endings and GPU faults (jobs and clusters: sentinel.daemon.job_watch).
    Ending("time_limit", "⏰", Urgency.HIGH, {
        "en": Words("Time limit reached", "the scheduler ended the job at its time limit"),
        "zh": Words("达到时间限制", "调度器在作业到达时间限制时结束了它"),
    }, Outcome.FAILURE, Tone.BAD, "alarm_clock", _CRITICAL, Ping.FAIL, run_state="time_limit"),
    Ending("cancelled", "🚫", Urgency.NORMAL, {
        "en": Words("Cancelled", "the job was cancelled"),
        "zh": Words("被取消", "作业被取消"),
    }, Outcome.FAILURE, Tone.BAD, "no_entry_sign", _WARNING, Ping.FAIL, run_state="cancelled"),
    Ending("preempted", "🔁", Urgency.HIGH, {
        "en": Words("Preempted", "the scheduler preempted or requeued the job"),
        "zh": Words("被抢占", "调度器抢占或重新排队了作业"),
    }, Outcome.FAILURE, Tone.BAD, "repeat", _CRITICAL, Ping.FAIL, run_state="preempted"),
    Ending("node_failure", "🖥️", Urgency.HIGH, {
        "en": Words("Node failure", "the scheduler lost the job's node"),
        "zh": Words("节点故障", "调度器失去了作业所在的节点"),
    }, Outcome.FAILURE, Tone.BAD, "desktop_computer", _CRITICAL, Ping.FAIL, run_state="node_failure"),
    Ending("gpu_fault", "🔥", Urgency.HIGH, {
        "en": Words("GPU fault", "the GPU driver reported a fault of the GPU or node"),
        "zh": Words("GPU 故障", "GPU 驱动报告了 GPU 或节点故障"),
    }, Outcome.FAILURE, Tone.BAD, "fire", _CRITICAL, Ping.FAIL, run_state="faulted", ends_run=False),
    Ending("message", "💬", Urgency.NORMAL, {
        "en": Words("Message", "a message from the run"),
        "zh": Words("消息", "来自运行的消息"),
    }, Outcome.NEUTRAL, Tone.INFO, "speech_balloon", _INFO),
    Ending("test", "🔔", Urgency.NORMAL, {
        "en": Words("Test alert", "a test of this channel"),
        "zh": Words("测试告警", "测试这个渠道"),
    }, Outcome.NEUTRAL, Tone.INFO, "bell", _INFO),
)

BY_KIND: Mapping[str, Ending] = {ending.kind: ending for ending in ENDINGS}
# States a process records in final.json (spool.FinalRecord.state).
FINAL_STATES: tuple[str, ...] = tuple(e.kind for e in ENDINGS if e.recorded)
# Kinds that are run-state transitions (a user may switch them on and off: `alert_on`).
STATE_KINDS: tuple[str, ...] = tuple(e.kind for e in ENDINGS if e.run_state is not None)
# The states a run can be in: running, then each row's ``run_state``, in table order.
RUN_STATES: tuple[str, ...] = tuple(dict.fromkeys(
    ["running", *(e.run_state for e in ENDINGS if e.run_state is not None)]))
# States a run may still leave (its process is believed to exist).
LIVE_STATES: frozenset[str] = frozenset(
    {"running"} | {e.run_state for e in ENDINGS if e.run_state is not None and not e.ends_run})


def ending(kind: str) -> Ending:
    return BY_KIND[kind]


def words(kind: str, lang: str) -> Words:
    """The words of ``kind`` in ``lang`` (a supported language code)."""
    row = BY_KIND[kind]
    return row.words.get(lang) or row.words["en"]


# ---------------------------------------------------------------- other words

# The one word table: besides the rows above and the reasons below, the words
# every alert shares (sentinel.model.render) and how a death with no exit record is
# said (sentinel.model.exit_status). tests/test_endings.py checks every language has all.

PHRASES: Mapping[str, Mapping[str, str]] = {
    "en": {
        "oom": "Killed by the OOM killer",
        "run": "Run",
        "project": "Project",
        "host": "Host",
        "pid": "PID",
        "job": "Job",
        "job_text": "{launcher} job {id}, {ranks} local rank{s}",
        "job_rank": "{launcher} job {id}, rank {rank}, {ranks} local rank{s}",
        "duration": "Duration",
        "step": "Step",
        "metrics": "Metrics",
        "labels": "Labels",
        "trend": "Trend",
        "heartbeat": "Last heartbeat",
        "progress": "Last progress",
        "exit": "Exit code",
        "signal": "Signal",
        "cause": "Cause",
        "error": "Error",
        "where": "Where",
        "output": "Last output",
        "stacks": "Stacks",
        "no_stacks": "not available: {}",
        "link": "SwanLab",
        "ago": "{} ago",
        "never": "never",
        "from": "Message from {}",
        "test_text": "If you can read this, {} can reach you through this channel.",
        "no_progress": "no progress for {}",
        "after": "after {}",
        "exit_code": "exit code {}",
        "digest": "{} alerts",
        "open": "Open in SwanLab",
        "more": "… {} more",
    },
    "zh": {
        "oom": "被 OOM killer 杀死（内存不足）",
        "run": "运行",
        "project": "项目",
        "host": "主机",
        "pid": "PID",
        "job": "作业",
        "job_text": "{launcher} 作业 {id}，本机 {ranks} 个 rank",
        "job_rank": "{launcher} 作业 {id}，rank {rank}，本机 {ranks} 个 rank",
        "duration": "时长",
        "step": "步数",
        "metrics": "指标",
        "labels": "标签",
        "trend": "趋势",
        "heartbeat": "最后心跳",
        "progress": "最后进展",
        "exit": "退出码",
        "signal": "信号",
        "cause": "原因",
        "error": "错误",
        "where": "位置",
        "output": "最后输出",
        "stacks": "调用栈",
        "no_stacks": "无法获取：{}",
        "link": "SwanLab",
        "ago": "{}前",
        "never": "无",
        "from": "来自 {} 的消息",
        "test_text": "看到这条消息，说明 {} 可以通过这个渠道通知你。",
        "no_progress": "已 {} 无进展",
        "after": "运行了 {}",
        "exit_code": "退出码 {}",
        "digest": "{} 条告警",
        "open": "在 SwanLab 中打开",
        "more": "… 另有 {} 条",
    },
}

# sentinel.model.exit_status.ending_key -> language -> (headline, summary); {signal} and {code} are filled in.
DEATH_WORDS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "killed": {
        "en": ("Killed ({signal})", "killed by {signal}; no exit record"),
        "zh": ("进程被杀死（{signal}）", "被 {signal} 杀死；没有退出记录"),
    },
    "native_crash": {
        "en": ("Crashed in native code ({signal})",
               "crashed in native code ({signal}: a C extension, a driver or the interpreter); "
               "no exit record"),
        "zh": ("原生代码崩溃（{signal}）",
               "原生代码崩溃（{signal}：C 扩展、驱动或解释器本身）；没有退出记录"),
    },
    "terminated": {
        "en": ("Terminated ({signal})", "terminated by {signal}; no exit record"),
        "zh": ("被终止（{signal}）", "被 {signal} 终止，未能写下退出记录"),
    },
    "signaled": {
        "en": ("Killed by {signal}", "killed by {signal}; no exit record"),
        "zh": ("被 {signal} 杀死", "被 {signal} 杀死；没有退出记录"),
    },
    "exited": {
        "en": ("Exited with code {code}",
               "exited with code {code}; no exit record (os._exit or native code)"),
        "zh": ("退出码 {code}", "以退出码 {code} 退出；没有退出记录（os._exit 或原生代码）"),
    },
}


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
    "container_stopped": {
        "en": "stopped (SIGTERM, then SIGKILL after the grace period; docker stop, killed {after} s "
              "after its SIGTERM)",
        "zh": "被停止（先 SIGTERM，宽限期后 SIGKILL；docker stop，SIGTERM 后 {after} 秒被杀死）",
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
    "unwatchable_silent": {
        "en": "no heartbeat for {silent:.0f}s (stall timeout {timeout:.0f}s), and the daemon cannot see "
              "the run's process (another PID namespace), so it cannot tell a frozen process from a dead one",
        "zh": "已 {silent:.0f} 秒没有心跳（卡住超时 {timeout:.0f} 秒）；"
              "守护进程看不到该运行的进程（不同的 PID 命名空间），无法区分进程是冻结还是已退出",
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
    # Jobs: one alert per job event (sentinel.daemon.job_watch). ``job`` is the
    # job's short id, ``rank`` a rank_* label, ``ending`` a rank's ending.
    "job_finished": {
        "en": "Job {job}: all {ranks} local rank{s} finished",
        "zh": "作业 {job}：本机全部 {ranks} 个 rank 已完成",
    },
    "job_finished_unseen": {
        "en": "Job {job}: all {ranks} local rank{s} finished ({unseen} without an exit status seen)",
        "zh": "作业 {job}：本机全部 {ranks} 个 rank 已完成（其中 {unseen} 个未看到退出状态）",
    },
    "job_ranks_ended_down": {
        "en": "Job {job}: ranks {names} ended while the daemon was down; which one failed first is not "
              "known ({ranks} local rank{s})",
        "zh": "作业 {job}：rank {names} 在守护进程停止期间结束；无法得知哪一个最先失败"
              "（本机共 {ranks} 个 rank）",
    },
    "job_rank_ended": {
        "en": "Job {job}: {rank} {ending}{step}",
        "zh": "作业 {job}：{rank}{ending}{step}",
    },
    "job_scheduler": {
        "en": "Job {job}: {scheduler}; {stopped} of {ranks} local rank{s} stopped",
        "zh": "作业 {job}：{scheduler}；本机 {ranks} 个 rank 中 {stopped} 个已停止",
    },
    "job_stalled": {
        "en": "Job {job}: rank{s} {names} of {ranks} stopped progressing; {stall}",
        "zh": "作业 {job}：{ranks} 个 rank 中的 rank {names} 停止了进展；{stall}",
    },
    "job_resumed": {
        "en": "every rank progresses again",
        "zh": "所有 rank 都恢复了进展",
    },
    "job_folded": {
        "en": "part of job {job}'s alert",
        "zh": "已包含在作业 {job} 的告警中",
    },
    "job_gpu_fault": {
        "en": "Job {job}: {rank}: {gpu}; kernel: {line}",
        "zh": "作业 {job}：{rank}：{gpu}；内核日志：{line}",
    },
    "at_step": {
        "en": " at step {step:,}",
        "zh": "（第 {step:,} 步）",
    },
    "stopped_other": {
        "en": "{who} stopped the other rank",
        "zh": "{who} 已停止另一个 rank",
    },
    "stopped_others": {
        "en": "{who} stopped the other {others} ranks",
        "zh": "{who} 已停止其余 {others} 个 rank",
    },
    "stopping_others": {
        "en": "{who} is stopping the other ranks ({stopped} of {others} stopped so far)",
        "zh": "{who} 正在停止其余 rank（{others} 个中已停止 {stopped} 个）",
    },
    "the_launcher": {
        "en": "the launcher",
        "zh": "启动器",
    },
    "rank_label": {
        "en": "rank {rank} (local rank {local_rank}, host {host}, pid {pid})",
        "zh": "rank {rank}（本机 rank {local_rank}，主机 {host}，PID {pid}）",
    },
    "rank_label_global": {
        "en": "rank {rank} (host {host}, pid {pid})",
        "zh": "rank {rank}（主机 {host}，PID {pid}）",
    },
    "rank_label_pid": {
        "en": "pid {pid} (host {host})",
        "zh": "PID {pid}（主机 {host}）",
    },
    "rank_finished": {"en": "finished", "zh": "已完成"},
    "rank_interrupted": {"en": "was interrupted (SIGINT)", "zh": "被中断（SIGINT）"},
    "rank_terminated": {"en": "was terminated ({signal})", "zh": "被终止（{signal}）"},
    "rank_crashed": {"en": "crashed: {line}", "zh": "崩溃：{line}"},
    "rank_crashed_code": {"en": "crashed (exit code {code})", "zh": "崩溃（退出码 {code}）"},
    "rank_oom": {"en": "was killed by the OOM killer", "zh": "被 OOM killer 杀死"},
    "rank_raised": {"en": "raised {message}", "zh": "抛出异常 {message}"},
    "rank_unseen": {"en": "ended (its exit status was not seen)", "zh": "已结束（未看到退出状态）"},
    "rank_ended_down": {"en": "ended while the daemon was down", "zh": "在守护进程停止期间结束"},
    "rank_killed": {"en": "was killed by {signal}", "zh": "被 {signal} 杀死"},
    "rank_exited_clean": {"en": "exited cleanly", "zh": "正常退出"},
    "rank_exit_code": {"en": "exited with code {code}", "zh": "以退出码 {code} 退出"},
    # Scheduler endings (sentinel.daemon.slurm).
    "slurm_time_limit": {
        "en": "Slurm ended the job at its time limit ({limit})",
        "zh": "Slurm 在作业到达时间限制（{limit}）时结束了它",
    },
    "slurm_time_limit_unknown": {
        "en": "Slurm ended the job at its time limit",
        "zh": "Slurm 在作业到达时间限制时结束了它",
    },
    "slurm_end_time": {
        "en": "SIGTERM at the job's end time: Slurm's time limit",
        "zh": "在作业结束时间收到 SIGTERM：Slurm 的时间限制",
    },
    "slurm_preempted": {
        "en": "Slurm preempted the job for a higher-priority one",
        "zh": "Slurm 为更高优先级的作业抢占了它",
    },
    "slurm_requeued": {
        "en": "Slurm requeued the job (restart {restarts}): preemption, an administrator's requeue "
              "or a lost node",
        "zh": "Slurm 重新排队了作业（第 {restarts} 次重启）：抢占、管理员重新排队或节点丢失",
    },
    "slurm_cancelled": {
        "en": "the job was cancelled (scancel)",
        "zh": "作业被取消（scancel）",
    },
    "slurm_node_failure": {
        "en": "Slurm lost the node ({state}, reason {reason})",
        "zh": "Slurm 失去了节点（{state}，原因 {reason}）",
    },
    # What the GPU driver and NCCL said (sentinel.daemon.xid, sentinel.daemon.nccl).
    "gpu_xid": {
        "en": "GPU PCI:{bus} Xid {code} ({meaning})",
        "zh": "GPU PCI:{bus} Xid {code}（{meaning}）",
    },
    "gpu_fault": {
        "en": "{gpu}; kernel: {line}",
        "zh": "{gpu}；内核日志：{line}",
    },
    "nccl_timeout": {
        "en": "NCCL watchdog timeout: {at_rank}{op}{seq} did not complete in {ran:.0f}s{limit}; "
              "a peer rank died or hung",
        "zh": "NCCL 看门狗超时：{at_rank}{op}{seq} 未在 {ran:.0f} 秒内完成{limit}；"
              "某个对端 rank 已退出或卡住",
    },
    "nccl_rank": {"en": "rank {rank}: ", "zh": "rank {rank}："},
    "nccl_collective": {"en": "a collective", "zh": "集合通信"},
    "nccl_limit": {"en": " (timeout {timeout:.0f}s)", "zh": "（超时 {timeout:.0f} 秒）"},
    "nccl_stuck": {
        "en": "NCCL watchdog stuck for {seconds}s (heartbeat monitor): "
              "the communicator hung, likely in the driver or a dead peer",
        "zh": "NCCL 看门狗卡住 {seconds} 秒（心跳监视器）：通信器挂起，可能卡在驱动中或对端已退出",
    },
    # Descendants of the ended run still alive (sentinel.daemon.survivors).
    "survivors": {
        "en": "{count} of its child processes still alive (pids {pids}; {rss} resident)",
        "zh": "仍有 {count} 个子进程在运行（PID {pids}；常驻内存 {rss}）",
    },
    # The run directory vanished (rm -rf) while the process lived: no final
    # record can be read, and the exit status of a process that is not the
    # daemon's child is not to be had, so "killed" would be a guess.
    "record_deleted": {
        "en": "ended; its run record was deleted, so how it ended is unknown",
        "zh": "已结束；它的运行记录已被删除，无法得知它是如何结束的",
    },
    # A record whose process the daemon never saw alive (gone, or the pid was
    # never its author's): no death was witnessed, so none is claimed.
    "never_seen_alive": {
        "en": "ended before the daemon saw it running (its process was gone, or never matched the "
              "record); no exit record, so how it ended is unknown",
        "zh": "守护进程看到它运行之前已结束（进程已不存在，或与记录不符）；"
              "没有退出记录，无法得知它是如何结束的",
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
    "never_seen_alive": {"en": "Ended (never seen running)", "zh": "已结束（从未见到其运行）"},
}
OOM_REASONS = frozenset({"oom_kernel", "oom_cgroup", "rank_oom"})
BEAT: Mapping[str, Mapping[str, str]] = {
    "en": {"at": "last heartbeat {}", "none": "no heartbeat recorded"},
    "zh": {"at": "最后心跳 {}", "none": "没有心跳记录"},
}


@dataclass(frozen=True)
class Reason:
    """Why an alert happened, as data: worded in each language by ``text``.

    A parameter may itself be worded per language: a reason (``{"code": ...,
    "args": ...}``, see ``as_arg``) or words by language (``{"en": ..., "zh":
    ...}``). ``notes`` (a list of reasons) are said after the text, each
    after a separator ("; "): what the GPU and NCCL added to an ending.
    """

    code: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def text(self, lang: str = "en") -> Optional[str]:
        """The reason in ``lang``; None for a code this version does not know."""
        return _worded(self.code, self.args, lang, _MAX_NESTING)

    def headline(self, lang: str = "en") -> Optional[str]:
        """The alert's first words if this reason changes them (``REASON_HEADLINES``), else None."""
        words = REASON_HEADLINES.get(self.code)
        return None if words is None else (words.get(lang) or words["en"])

    @property
    def is_oom(self) -> bool:
        """The OOM killer did it: this reason says so, or one of its parts (a job's rank)."""
        return self.code in OOM_REASONS or any(
            isinstance(value, Mapping) and value.get("code") in OOM_REASONS for value in self.args.values())

    def as_arg(self) -> dict[str, Any]:
        """This reason as another reason's parameter (or note)."""
        return {"code": self.code, "args": dict(self.args)}

    def with_notes(self, notes: list[Reason]) -> Reason:
        """This reason with ``notes`` said after it."""
        if not notes:
            return self
        kept = list(self.args.get("notes") or [])
        return Reason(self.code, {**self.args, "notes": kept + [n.as_arg() for n in notes]})


NOTE_SEPARATOR: Mapping[str, str] = {"en": "; ", "zh": "；"}
_MAX_NESTING = 4  # a record of another version cannot make wording recurse without end


def _worded(code: Any, raw_args: Any, lang: str, depth: int) -> Optional[str]:
    templates = REASONS.get(code) if isinstance(code, str) else None
    if templates is None or depth <= 0 or not isinstance(raw_args, Mapping):
        return None
    template = templates.get(lang) or templates["en"]
    args = {key: _arg(value, lang, depth) for key, value in raw_args.items() if key != "notes"}
    if "last_beat" in args:
        args["last_beat"] = beat_text(raw_args["last_beat"], lang)
    try:
        said = template.format(**args)
    except (KeyError, ValueError, TypeError, IndexError):  # a record from another version
        return None
    notes = raw_args.get("notes")
    if isinstance(notes, list):
        said_notes = (_arg(note, lang, depth) for note in notes)
        said = NOTE_SEPARATOR.get(lang, "; ").join([said, *(t for t in said_notes if t)])
    return said


def _arg(value: Any, lang: str, depth: int) -> Any:
    """A parameter's value in ``lang``: nested reasons and per-language words worded."""
    if not isinstance(value, Mapping):
        return value
    if "code" in value:
        return _worded(value.get("code"), value.get("args", {}), lang, depth - 1) or ""
    words = value.get(lang, value.get("en"))
    return words if isinstance(words, str) else ""


def beat_text(beat: Any, lang: str = "en") -> str:
    beat_words = BEAT.get(lang) or BEAT["en"]
    if not isinstance(beat, (int, float)) or isinstance(beat, bool) or beat != beat:
        return beat_words["none"]
    return beat_words["at"].format(time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(beat)))
