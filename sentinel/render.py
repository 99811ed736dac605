"""What an alert says, in English and Chinese, shaped for each channel.

The first words always say what happened ("Crashed: resnet50"), because a
phone shows little more than that. Then the facts a tired engineer needs to
decide whether to get up: which run, where, how long it ran, how far it got,
when it last showed a sign of life, why it ended, and the link to SwanLab.

Pure functions of an ``Alert`` (and the language): channels call them and
only add their service's envelope. Stdlib only.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Optional, Sequence

from sentinel.alerts import Alert, AlertKind

LANGUAGES = ("en", "zh")
# Every message names the product: a DingTalk robot guarded by a custom
# keyword accepts our messages once "sentinel" is its keyword.
PRODUCT = "run-sentinel"

DINGTALK_MAX_BYTES = 20000
_DINGTALK_BUDGET = 18000  # headroom below the service limit for the envelope
BARK_BODY_MAX_CHARS = 1000  # APNs payloads are capped at 4 KB
SLACK_SECTION_MAX = 3000
SLACK_HEADER_MAX = 150

EMOJI = {
    AlertKind.FINISHED: "✅",
    AlertKind.CRASHED: "💥",
    AlertKind.ABORTED: "⛔",
    AlertKind.TERMINATED: "🛑",
    AlertKind.KILLED: "☠️",
    AlertKind.STALLED: "⏸️",
    AlertKind.RECOVERED: "🔄",
    AlertKind.LOST: "❓",
    AlertKind.TIME_LIMIT: "⏰",
    AlertKind.CANCELLED: "🚫",
    AlertKind.PREEMPTED: "🔁",
    AlertKind.NODE_FAILURE: "🖥️",
    AlertKind.GPU_FAULT: "🔥",
    AlertKind.MESSAGE: "💬",
    AlertKind.TEST: "🔔",
}

_WORDS = {
    "en": {
        AlertKind.FINISHED: "Finished",
        AlertKind.CRASHED: "Crashed",
        AlertKind.ABORTED: "Aborted",
        AlertKind.TERMINATED: "Terminated",
        AlertKind.KILLED: "Killed",
        AlertKind.STALLED: "Stalled",
        AlertKind.RECOVERED: "Recovered",
        AlertKind.LOST: "Lost",
        AlertKind.TIME_LIMIT: "Time limit reached",
        AlertKind.CANCELLED: "Cancelled",
        AlertKind.PREEMPTED: "Preempted",
        AlertKind.NODE_FAILURE: "Node failure",
        AlertKind.GPU_FAULT: "GPU fault",
        AlertKind.MESSAGE: "Message",
        AlertKind.TEST: "Test alert",
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
        "heartbeat": "Last heartbeat",
        "progress": "Last progress",
        "exit": "Exit code",
        "signal": "Signal",
        "cause": "Cause",
        "error": "Error",
        "link": "SwanLab",
        "ago": "{} ago",
        "never": "never",
        "from": "Message from {}",
        "test_text": "If you can read this, {} can reach you through this channel.",
        "no_progress": "no progress for {}",
        "after": "after {}",
        "resumed": "progress resumed",
        "lost_text": "the host rebooted or lost power before the run ended",
        "killed_text": "killed (SIGKILL or crash of the interpreter; no exit record)",
        "exit_code": "exit code {}",
        "digest": "{} alerts",
        "open": "Open in SwanLab",
        "more": "… {} more",
    },
    "zh": {
        AlertKind.FINISHED: "训练完成",
        AlertKind.CRASHED: "训练崩溃",
        AlertKind.ABORTED: "训练中止",
        AlertKind.TERMINATED: "被终止",
        AlertKind.KILLED: "进程被杀死",
        AlertKind.STALLED: "训练卡住",
        AlertKind.RECOVERED: "已恢复",
        AlertKind.LOST: "运行丢失",
        AlertKind.TIME_LIMIT: "达到时间限制",
        AlertKind.CANCELLED: "被取消",
        AlertKind.PREEMPTED: "被抢占",
        AlertKind.NODE_FAILURE: "节点故障",
        AlertKind.GPU_FAULT: "GPU 故障",
        AlertKind.MESSAGE: "消息",
        AlertKind.TEST: "测试告警",
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
        "heartbeat": "最后心跳",
        "progress": "最后进展",
        "exit": "退出码",
        "signal": "信号",
        "cause": "原因",
        "error": "错误",
        "link": "SwanLab",
        "ago": "{}前",
        "never": "无",
        "from": "来自 {} 的消息",
        "test_text": "看到这条消息，说明 {} 可以通过这个渠道通知你。",
        "no_progress": "已 {} 无进展",
        "after": "运行了 {}",
        "resumed": "训练恢复进展",
        "lost_text": "主机在运行结束前重启或断电",
        "killed_text": "进程被杀死（SIGKILL 或解释器崩溃；没有退出记录）",
        "exit_code": "退出码 {}",
        "digest": "{} 条告警",
        "open": "在 SwanLab 中打开",
        "more": "… 另有 {} 条",
    },
}


def language_of(*choices: Optional[str]) -> str:
    """The first supported language among ``choices`` ("zh-CN" counts as zh)."""
    for choice in choices:
        if not choice:
            continue
        code = str(choice).strip().lower()
        if code.startswith("zh"):
            return "zh"
        if code.startswith("en"):
            return "en"
    return "en"


def _w(lang: str, key: object) -> str:
    return _WORDS[language_of(lang)][key]  # type: ignore[index]


# ---------------------------------------------------------------- small facts


def format_duration(seconds: Optional[float], lang: str = "en") -> str:
    """'2h 05m' / '2小时5分' — coarse on purpose: nobody needs seconds of a day."""
    if seconds is None:
        return "?"
    total = int(max(0.0, seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if language_of(lang) == "zh":
        if days:
            return f"{days}天{hours}小时"
        if hours:
            return f"{hours}小时{minutes}分"
        if minutes:
            return f"{minutes}分{secs}秒"
        return f"{secs}秒"
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_scalars(scalars: dict, limit: int = 6) -> str:
    items = list(scalars.items())[:limit]
    text = ", ".join(f"{k}={v:.4g}" for k, v in items)
    if len(scalars) > limit:
        text += ", …"
    return text


def is_oom(alert: Alert) -> bool:
    detail = (alert.detail or "").lower()
    return "oom" in detail or "out of memory" in detail


def what_happened(alert: Alert, lang: str = "en") -> str:
    """The first words: 'Crashed', 'Killed by the OOM killer', 'Terminated (SIGTERM)'."""
    if alert.kind == AlertKind.KILLED and is_oom(alert):
        return _w(lang, "oom")
    word = _w(lang, alert.kind)
    if alert.kind == AlertKind.TERMINATED:
        word += f" ({alert.signal or 'SIGTERM'})"
    return word


def run_label(alert: Alert) -> str:
    return alert.run_name or alert.run_id or PRODUCT


def headline(alert: Alert, lang: str = "en") -> str:
    """'Crashed: resnet50' — what happened first, then which run."""
    if alert.kind == AlertKind.MESSAGE:
        return _w(lang, "from").format(run_label(alert))
    if alert.kind == AlertKind.TEST:
        return f"{_w(lang, AlertKind.TEST)}: {PRODUCT}"
    return f"{what_happened(alert, lang)}: {run_label(alert)}"


def _age(then: Optional[float], now: float, lang: str) -> str:
    if then is None:
        return _w(lang, "never")
    return _w(lang, "ago").format(format_duration(now - then, lang))


def summary(alert: Alert, lang: str = "en") -> str:
    """One sentence under the headline: why, or how long."""
    kind = alert.kind
    if kind == AlertKind.MESSAGE:
        return alert.text or ""
    if kind == AlertKind.TEST:
        return alert.text or _w(lang, "test_text").format(PRODUCT)
    if alert.job and alert.detail:
        return alert.detail  # "Job 4242: rank 3 (…) was killed by the OOM killer; …"
    if kind == AlertKind.STALLED:
        since = alert.last_progress if alert.last_progress is not None else alert.last_beat
        if since is None:
            since = alert.started
        return _w(lang, "no_progress").format(format_duration(alert.created - since, lang)) if since else ""
    if kind == AlertKind.RECOVERED:
        return _w(lang, "resumed")
    if kind == AlertKind.KILLED:
        return alert.detail or _w(lang, "killed_text")
    if kind == AlertKind.LOST:
        return alert.detail or _w(lang, "lost_text")
    if kind in (AlertKind.CRASHED, AlertKind.ABORTED):
        last = last_error_line(alert)
        if last:
            return last
        if alert.exit_code not in (None, 0):
            return _w(lang, "exit_code").format(alert.exit_code)
    if alert.detail:
        return alert.detail
    if alert.duration is not None:
        return _w(lang, "after").format(format_duration(alert.duration, lang))
    return ""


def last_error_line(alert: Alert) -> Optional[str]:
    """'RuntimeError: CUDA out of memory' — the line a traceback ends with."""
    for line in reversed((alert.error or "").splitlines()):
        if line.strip():
            return _cap(line.strip(), 300)
    return None


def facts(alert: Alert, lang: str = "en") -> list[tuple[str, str]]:
    """(label, value) pairs, most useful first; absent facts are left out."""
    out: list[tuple[str, str]] = []
    if alert.kind == AlertKind.TEST:
        out.append((_w(lang, "host"), alert.hostname or "?"))
        return out
    out.append((_w(lang, "run"), run_label(alert)))
    project = alert.labels.get("project")
    if project:
        workspace = alert.labels.get("workspace")
        out.append((_w(lang, "project"), f"{workspace}/{project}" if workspace else project))
    host = alert.hostname or "?"
    if alert.user:
        host = f"{alert.user}@{host}"
    out.append((_w(lang, "host"), host))
    if alert.pid is not None:
        out.append((_w(lang, "pid"), str(alert.pid)))
    if alert.job:
        out.append((_w(lang, "job"), job_text(alert, lang)))
    if alert.kind == AlertKind.MESSAGE:
        return out
    if alert.duration is not None:
        out.append((_w(lang, "duration"), format_duration(alert.duration, lang)))
    if alert.step is not None:
        out.append((_w(lang, "step"), f"{alert.step:,}"))
    if alert.scalars:
        out.append((_w(lang, "metrics"), format_scalars(alert.scalars)))
    if alert.kind.is_state and alert.kind not in (AlertKind.FINISHED,):
        out.append((_w(lang, "heartbeat"), _age(alert.last_beat, alert.created, lang)))
        if alert.kind == AlertKind.STALLED and alert.last_progress is not None:
            out.append((_w(lang, "progress"), _age(alert.last_progress, alert.created, lang)))
    if alert.exit_code not in (None, 0):
        out.append((_w(lang, "exit"), str(alert.exit_code)))
    if alert.signal and alert.kind != AlertKind.TERMINATED:
        out.append((_w(lang, "signal"), alert.signal))
    said_already = (AlertKind.KILLED, AlertKind.LOST, AlertKind.GPU_FAULT)  # the summary is the detail
    if alert.detail and alert.kind not in said_already and not alert.job:
        out.append((_w(lang, "cause"), alert.detail))
    return out


def job_text(alert: Alert, lang: str = "en") -> str:
    """'torchrun job 4242, rank 3, 4 local ranks' (the rank that failed first, if one did)."""
    job = alert.job
    template = "job_rank" if job.get("cause_rank") else "job_text"
    ranks = job.get("ranks") or "?"
    return _w(lang, template).format(launcher=job.get("launcher") or "?", id=job.get("id") or "?",
                                     rank=job.get("cause_rank"), ranks=ranks, s="" if ranks == "1" else "s")


def error_tail(alert: Alert, max_lines: int = 12, max_chars: int = 1500) -> Optional[str]:
    """The last lines of the error: a traceback's end says what went wrong."""
    if not alert.error:
        return None
    lines = [line.rstrip() for line in alert.error.strip("\n").splitlines() if line.strip()]
    lines = lines[-max_lines:]
    text = "\n".join(lines)
    if len(text) > max_chars:
        text = "…" + text[-(max_chars - 1):]
    return text


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- per channel


def render_text(alert: Alert, lang: str = "en") -> str:
    """Plain text for a terminal (the console channel)."""
    lines = [f"{EMOJI.get(alert.kind, '')} {headline(alert, lang)}".strip()]
    said = summary(alert, lang)
    if said:
        lines.append(f"  {said}" if alert.kind != AlertKind.MESSAGE else _indent(said))
    width = max((_width(label) for label, _ in facts(alert, lang)), default=0)
    for label, value in facts(alert, lang):
        lines.append(f"  {label}{' ' * (width - _width(label))}  {value}")
    tail = error_tail(alert)
    if tail:
        lines.append(f"  {_w(lang, 'error')}:")
        lines.extend("    " + line for line in tail.splitlines())
    if alert.url:
        lines.append(f"  {_w(lang, 'link')}: {alert.url}")
    return "\n".join(lines)


def _width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


@dataclass(frozen=True)
class BarkText:
    title: str
    subtitle: str
    body: str


def render_bark(alert: Alert, lang: str = "en") -> BarkText:
    """A phone notification: title = what happened + run; subtitle = where
    and how long; body = why, the last error line, progress."""
    title = f"{EMOJI.get(alert.kind, '')} {headline(alert, lang)}".strip()
    where = [alert.labels.get("project") or "", alert.hostname or ""]
    if alert.kind.is_state and alert.duration is not None:
        where.append(format_duration(alert.duration, lang))
    subtitle = " · ".join(part for part in where if part)
    body: list[str] = []
    said = summary(alert, lang)
    if said:
        body.append(said)
    if alert.kind not in (AlertKind.CRASHED, AlertKind.ABORTED):  # there the summary is the error
        last = last_error_line(alert)
        if last:
            body.append(last)
    progress = []
    if alert.step is not None:
        progress.append(f"{_w(lang, 'step')} {alert.step:,}")
    if alert.scalars:
        progress.append(format_scalars(alert.scalars, limit=4))
    if progress:
        body.append(" · ".join(progress))
    if alert.kind.is_state and alert.kind != AlertKind.FINISHED:
        life = [f"{_w(lang, 'heartbeat')} {_age(alert.last_beat, alert.created, lang)}"]
        if alert.pid is not None:
            life.append(f"pid {alert.pid}")
        body.append(" · ".join(life))
    return BarkText(_cap(title, 120), _cap(subtitle, 120), _cap("\n".join(body), BARK_BODY_MAX_CHARS))


def _md_escape(text: str) -> str:
    # Values never start a line (so "#" is harmless) and intraword "_" in
    # run names like "lr_3e_4" is no markup; only "*" would turn bold.
    return text.replace("*", "\\*")


def render_markdown(alert: Alert, lang: str = "en", max_bytes: int = _DINGTALK_BUDGET) -> tuple[str, str]:
    """DingTalk markdown: (title shown in the notification, text)."""
    title = f"{EMOJI.get(alert.kind, '')} {headline(alert, lang)}".strip()
    lines = [f"### {_md_escape(title)}", ""]
    said = summary(alert, lang)
    if said:
        lines += [_md_escape(said) if alert.kind != AlertKind.MESSAGE else said, ""]
    for label, value in facts(alert, lang):
        lines.append(f"- **{label}**: {_md_escape(value)}")
    tail = error_tail(alert, max_lines=15, max_chars=3000)
    if tail:
        lines += ["", f"**{_w(lang, 'error')}**:", ""]
        lines += ["> " + line for line in tail.splitlines()]
    if alert.url:
        lines += ["", f"[{_w(lang, 'open')}]({alert.url})"]
    lines += ["", f"<font color=#999999>{PRODUCT}</font>"]
    text = "\n".join(lines)
    return _cap(title, 100), _fit_bytes(text, max_bytes)


def _digest_item(alert: Alert, lang: str) -> str:
    item = [f"- {EMOJI.get(alert.kind, '')} **{_md_escape(_cap(headline(alert, lang), 150))}**"]
    said = summary(alert, lang)
    if said:
        item.append(f"  {_md_escape(_cap(said.splitlines()[0], 200))}")
    where = " · ".join(p for p in (alert.labels.get("project"), alert.hostname) if p)
    if where:
        item.append(f"  {_md_escape(_cap(where, 120))}")
    tail = error_tail(alert, max_lines=1, max_chars=200)
    if tail:
        item.append(f"  > {tail}")
    if alert.url and len(alert.url) <= 400:
        item.append(f"  [{_w(lang, 'open')}]({alert.url})")
    return "\n".join(item)


def digest_fit(alerts: Sequence[Alert], lang: str = "en", max_bytes: int = _DINGTALK_BUDGET) -> int:
    """How many of ``alerts`` (oldest first, at least one) fit one digest."""
    used = len(render_digest_markdown(alerts[:1], lang, max_bytes=10**9)[1].encode("utf-8"))
    count = 1
    for alert in alerts[1:]:
        size = len(_digest_item(alert, lang).encode("utf-8")) + 1
        if used + size > max_bytes:
            break
        used += size
        count += 1
    return count


def render_digest_markdown(alerts: Sequence[Alert], lang: str = "en",
                           max_bytes: int = _DINGTALK_BUDGET) -> tuple[str, str]:
    """Several alerts for one robot in one DingTalk message, oldest first:
    when a burst would exceed the robot's 20/min, one digest says it all.
    Use ``digest_fit`` to choose how many alerts to pass."""
    title = f"{PRODUCT}: {_w(lang, 'digest').format(len(alerts))}"
    lines = [f"### {title}", ""]
    lines += [_digest_item(alert, lang) for alert in alerts]
    lines += ["", f"<font color=#999999>{PRODUCT}</font>"]
    return title, _fit_bytes("\n".join(lines), max_bytes)


def _fit_bytes(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode("utf-8", "ignore") + "…"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_slack(alert: Alert, lang: str = "en") -> dict:
    """Slack: ``text`` (notification + fallback) and Block Kit ``blocks``."""
    title = f"{EMOJI.get(alert.kind, '')} {headline(alert, lang)}".strip()
    said = summary(alert, lang)
    text = f"{title} — {said}" if said else title
    blocks: list[dict] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": _cap(title, SLACK_HEADER_MAX), "emoji": True}}
    ]
    if said:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": _cap(_slack_escape(said), SLACK_SECTION_MAX)}})
    fields = [
        {"type": "mrkdwn", "text": _cap(f"*{label}*\n{_slack_escape(value)}", 2000)}
        for label, value in facts(alert, lang)
    ][:10]  # Block Kit allows at most 10 fields per section
    if fields:
        blocks.append({"type": "section", "fields": fields})
    tail = error_tail(alert, max_lines=20, max_chars=SLACK_SECTION_MAX - 10)
    if tail:
        code = _slack_escape(tail).replace("```", "ˋˋˋ")  # a fence inside would end the block
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{code}```"}})
    if alert.url:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": _w(lang, "open")}, "url": alert.url}
        ]})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": _slack_escape(f"{PRODUCT} · {alert.alert_id}")}
    ]})
    return {"text": _cap(text, 3000), "blocks": blocks}


# Block Kit allows 50 blocks a message: a header, the items, a context line.
SLACK_DIGEST_MAX = 48


def render_slack_digest(alerts: Sequence[Alert], lang: str = "en") -> dict:
    """Several alerts in one Slack message, oldest first: a backlog that
    pacing (one message a second) would spread over minutes arrives at once.
    Pass at most ``SLACK_DIGEST_MAX`` alerts."""
    title = f"{PRODUCT}: {_w(lang, 'digest').format(len(alerts))}"
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}}]
    lines = []
    for alert in alerts[:SLACK_DIGEST_MAX]:
        head = f"{EMOJI.get(alert.kind, '')} {headline(alert, lang)}".strip()
        said = summary(alert, lang)
        where = " · ".join(p for p in (alert.labels.get("project"), alert.hostname) if p)
        item = f"*{_slack_escape(_cap(head, 150))}*"
        if said:
            item += "\n" + _slack_escape(_cap(said.splitlines()[0], 300))
        if where:
            item += "\n" + _slack_escape(_cap(where, 120))
        if alert.url and len(alert.url) <= 400:
            item += f"\n<{alert.url}|{_w(lang, 'open')}>"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cap(item, SLACK_SECTION_MAX)}})
        lines.append(head)
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": PRODUCT}]})
    text = f"{title} — " + "; ".join(lines)
    return {"text": _cap(text, 3000), "blocks": blocks}

