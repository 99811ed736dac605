"""What an alert says, in English and Chinese: the wording every channel shares.

The first words always say what happened ("Crashed: resnet50"), because a
phone shows little more than that. Then the facts a tired engineer needs to
decide whether to get up: which run, where, how long it ran, how far it got,
when it last showed a sign of life, why it ended, and the link to SwanLab.

Pure functions of an ``Alert`` (and the language). Each channel module lays
them out in its service's payload; the words of each alert kind and reason
come from ``sentinel.model.endings``. Stdlib only.
"""

from __future__ import annotations

from typing import Optional

from sentinel.common import sparkline
from sentinel.host.containers import label_of
from sentinel.model import endings, exit_status
from sentinel.model.alerts import Alert, AlertKind

# Every message names the product: a DingTalk robot guarded by a custom
# keyword accepts our messages once "sentinel" is its keyword.
PRODUCT = "run-sentinel"

_WORDS = endings.PHRASES  # the shared words live in the one word table


_LANGUAGES = frozenset({"en", "zh"})


def language_of(*choices: Optional[str]) -> str:
    """The first supported language among ``choices`` ("zh-CN" counts as zh)."""
    first = choices[0] if choices else None
    if first is not None and first in _LANGUAGES:  # already one: every ``say`` of a rendering asks again
        return first
    for choice in choices:
        if not choice:
            continue
        code = str(choice).strip().lower()
        if code.startswith("zh"):
            return "zh"
        if code.startswith("en"):
            return "en"
    return "en"


def say(lang: str, key: str) -> str:
    """A shared word or phrase (a format string where it takes values) in ``lang``."""
    return _WORDS[language_of(lang)][key]


def kind_words(kind: AlertKind, lang: str) -> endings.Words:
    return endings.words(kind.value, language_of(lang))


def emoji(kind: AlertKind) -> str:
    return kind.ending.emoji


def reason_text(alert: Alert, lang: str = "en") -> Optional[str]:
    """Why, in ``lang``: the alert's reason worded there, else its free-text
    detail (records written before reasons existed, unknown codes)."""
    why = alert.why
    text = why.text(language_of(lang)) if why is not None else None
    return text if text is not None else alert.detail


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


def format_labels(labels: dict, limit: int = 8) -> str:
    items = list(labels.items())[:limit]
    text = ", ".join(f"{k}={cap(str(v), 80)}" for k, v in items)
    if len(labels) > limit:
        text += ", …"
    return text


def trend_line(alert: Alert) -> Optional[str]:
    """'loss ▇▆▅▃▂▁ 2.31 → 0.412 (min 0.401, max 2.31)', or None (under two points)."""
    drawn = sparkline.describe(alert.trend)
    if not drawn:
        return None
    return f"{cap(alert.trend_metric or '', 40)} {drawn}".strip()


def killed_by_sigkill(alert: Alert) -> bool:
    """A ``sentinel run`` child killed by SIGKILL: its wrapper recorded it as
    terminated, but it reads like any other kill."""
    return alert.kind == AlertKind.TERMINATED and alert.signal == "SIGKILL"


def is_oom(alert: Alert) -> bool:
    why = alert.why
    if why is not None and why.code in endings.REASONS:
        return why.is_oom
    detail = (alert.detail or "").lower()
    return "oom" in detail or "out of memory" in detail


def what_happened(alert: Alert, lang: str = "en") -> str:
    """The first words: 'Crashed', 'Killed by the OOM killer', 'Terminated (SIGTERM)'."""
    if alert.kind == AlertKind.KILLED and is_oom(alert):
        return say(lang, "oom")
    kernel = kernel_words(alert, lang)
    if kernel is not None:
        return kernel[0]
    why = alert.why
    special = why.headline(language_of(lang)) if why is not None else None
    if special is not None:
        return special
    word = kind_words(alert.kind, lang).headline
    if alert.kind == AlertKind.TERMINATED:
        word += f" ({alert.signal or 'SIGTERM'})"
    return word


def kernel_words(alert: Alert, lang: str) -> Optional[tuple[str, str]]:
    """(headline, summary) of a death with no exit record, as the kernel named it;
    a ``sentinel run`` child killed by SIGKILL reads the same."""
    if alert.kind != AlertKind.KILLED and not killed_by_sigkill(alert):
        return None
    return exit_status.words(alert.signal, None if killed_by_sigkill(alert) else alert.exit_code,
                             language_of(lang))


def run_label(alert: Alert) -> str:
    return alert.run_name or alert.run_id or PRODUCT


def headline(alert: Alert, lang: str = "en") -> str:
    """'Crashed: resnet50' — what happened first, then which run."""
    if alert.kind == AlertKind.MESSAGE:
        # The run's own words follow: say whose, by the verified account.
        sender = f"{alert.user} · {run_label(alert)}" if alert.user else run_label(alert)
        return say(lang, "from").format(sender)
    if alert.kind == AlertKind.TEST:
        return f"{kind_words(AlertKind.TEST, lang).headline}: {PRODUCT}"
    return f"{what_happened(alert, lang)}: {run_label(alert)}"


def title(alert: Alert, lang: str = "en") -> str:
    """The headline behind the kind's emoji: what a notification shows first."""
    kind = AlertKind.KILLED if killed_by_sigkill(alert) else alert.kind
    return f"{emoji(kind)} {headline(alert, lang)}".strip()


def age(then: Optional[float], now: float, lang: str) -> str:
    if then is None:
        return say(lang, "never")
    return say(lang, "ago").format(format_duration(now - then, lang))


def summary(alert: Alert, lang: str = "en") -> str:
    """One sentence under the headline: why, or how long."""
    kind = alert.kind
    if kind == AlertKind.MESSAGE:
        return alert.text or ""
    if kind == AlertKind.TEST:
        return alert.text or say(lang, "test_text").format(PRODUCT)
    job_said = reason_text(alert, lang) if alert.job else None
    if job_said:
        return job_said  # "Job 4242: rank 3 (…) was killed by the OOM killer; …"
    if kind == AlertKind.STALLED:
        since = alert.last_progress if alert.last_progress is not None else alert.last_beat
        if since is None:
            since = alert.started
        return say(lang, "no_progress").format(format_duration(alert.created - since, lang)) if since else ""
    if kind == AlertKind.RECOVERED:
        return kind_words(kind, lang).detail
    if kind in (AlertKind.KILLED, AlertKind.LOST):
        kernel = kernel_words(alert, lang)
        return reason_text(alert, lang) or (kernel[1] if kernel else kind_words(kind, lang).detail)
    kernel = kernel_words(alert, lang)
    if kernel is not None:  # a `sentinel run` child killed by SIGKILL
        return kernel[1]
    if kind == AlertKind.ABORTED and alert.error:
        return interrupt_line(alert)
    if kind in (AlertKind.CRASHED, AlertKind.ABORTED):
        last = last_error_line(alert)
        if last:
            return last
        if alert.exit_code not in (None, 0):
            return say(lang, "exit_code").format(alert.exit_code)
    why = reason_text(alert, lang)
    if why:
        return why
    if alert.duration is not None:
        return say(lang, "after").format(format_duration(alert.duration, lang))
    return ""


def where(alert: Alert) -> str:
    """'gpu-node-3 · container 3f2a9c1b7d4e': the host, and the container the run was in."""
    container = label_of(alert.container)
    return " · ".join(p for p in (alert.hostname, container) if p)


def last_error_line(alert: Alert) -> Optional[str]:
    """'RuntimeError: CUDA out of memory' — the line a traceback ends with."""
    for line in reversed((alert.error or "").splitlines()):
        if line.strip():
            return cap(line.strip(), 300)
    return None


def interrupt_line(alert: Alert) -> str:
    """What interrupted the run ('KeyboardInterrupt'): the traceback's own
    exception line, never the frame the interrupt landed in (a traceback
    SwanLab records for Ctrl-C can end at ``time.sleep(0.1)``)."""
    for line in reversed((alert.error or "").splitlines()):
        if line.strip() and not line[:1].isspace() and not line.startswith("Traceback ("):
            return cap(line.strip(), 300)
    return "KeyboardInterrupt"


def facts(alert: Alert, lang: str = "en") -> list[tuple[str, str]]:
    """(label, value) pairs, most useful first; absent facts are left out."""
    out: list[tuple[str, str]] = []
    if alert.kind == AlertKind.TEST:
        out.append((say(lang, "host"), alert.hostname or "?"))
        return out
    out.append((say(lang, "run"), run_label(alert)))
    evidence = evidence_fact(alert, lang)  # evidence first: where it hangs, which frame crashed
    if evidence:
        out.append(evidence)
    project = alert.labels.get("project")
    if project:
        workspace = alert.labels.get("workspace")
        out.append((say(lang, "project"), f"{workspace}/{project}" if workspace else project))
    if alert.user_labels:
        out.append((say(lang, "labels"), format_labels(alert.user_labels)))
    host = alert.hostname or "?"
    if alert.user:
        host = f"{alert.user}@{host}"
    container = label_of(alert.container)
    if container:
        host = f"{host} · {container}"  # the node's name, the container's beside it
    out.append((say(lang, "host"), host))
    if alert.pid is not None:
        out.append((say(lang, "pid"), str(alert.pid)))
    if alert.job:
        out.append((say(lang, "job"), job_text(alert, lang)))
    if alert.kind == AlertKind.MESSAGE:
        return out
    if alert.duration is not None:
        out.append((say(lang, "duration"), format_duration(alert.duration, lang)))
    if alert.step is not None:
        out.append((say(lang, "step"), f"{alert.step:,}"))
    if alert.scalars:
        out.append((say(lang, "metrics"), format_scalars(alert.scalars)))
    trend = trend_line(alert)
    if trend:
        out.append((say(lang, "trend"), trend))
    if alert.kind.is_state and alert.kind not in (AlertKind.FINISHED,):
        out.append((say(lang, "heartbeat"), age(alert.last_beat, alert.created, lang)))
        if alert.kind == AlertKind.STALLED and alert.last_progress is not None:
            out.append((say(lang, "progress"), age(alert.last_progress, alert.created, lang)))
    if alert.output and alert.kind.is_state:
        out.append((say(lang, "output"), alert.output[-1]))  # a push has room for the last line
    if alert.exit_code not in (None, 0):
        out.append((say(lang, "exit"), str(alert.exit_code)))
    if alert.signal and alert.kind != AlertKind.TERMINATED:
        out.append((say(lang, "signal"), alert.signal))
    why = reason_text(alert, lang)
    said_already = (AlertKind.KILLED, AlertKind.LOST, AlertKind.GPU_FAULT)  # the summary is the reason
    if why and alert.kind not in said_already and not alert.job:
        out.append((say(lang, "cause"), why))
    return out


def evidence_fact(alert: Alert, lang: str = "en") -> Optional[tuple[str, str]]:
    """('Where', 'wait_for_peer (train.py:12)'), or why the stacks are missing."""
    if alert.where:
        return say(lang, "where"), alert.where
    if alert.evidence_missing:
        return say(lang, "stacks"), say(lang, "no_stacks").format(alert.evidence_missing)
    return None


def job_text(alert: Alert, lang: str = "en") -> str:
    """'torchrun job 4242, rank 3, 4 local ranks' (the rank that failed first, if one did)."""
    job = alert.job
    template = "job_rank" if job.get("cause_rank") else "job_text"
    ranks = job.get("ranks") or "?"
    return say(lang, template).format(launcher=job.get("launcher") or "?", id=job.get("id") or "?",
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


def evidence_tail(alert: Alert, max_lines: int, max_chars: int) -> Optional[str]:
    """The last printed lines, every thread's stack, then the error's end: for the channels with room
    (e-mail); a cut keeps the end, so the error survives it."""
    output = "\n".join(alert.output) if alert.output else None
    parts = [text for text in (output, alert.stacks, error_tail(alert, max_lines, max_chars)) if text]
    return "\n\n".join(parts) if parts else None


def cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
