"""The endings table is complete: every kind, every field, every language, every word."""

from __future__ import annotations

import re

import pytest

from sentinel import endings, render, spool
from sentinel.alerts import ALERT_STATES, Alert, AlertKind
from sentinel.channels.bark import DEFAULT_LEVELS, LEVELS, URGENCY_LEVELS, render_bark
from sentinel.channels.dingtalk import render_markdown
from sentinel.daemon import decide
from sentinel.endings import LANGUAGES, REASONS, Reason, Urgency
from tests.fakes.samples import sample_alert

# Sample parameters for every reason template (a new parameter needs a sample here).
REASON_ARGS = {"line": "Out of memory: Killed process 4 (python)", "path": "/sys/fs/cgroup/x/memory.events",
               "last_beat": 1_750_000_000.0, "silent": 42.0, "timeout": 30.0}
ASCII_WORD = re.compile(r"[A-Za-z]{2,}")
# Names that stay as they are in Chinese text.
NAMES = {"OOM", "killer", "cgroup", "SIGKILL"}


@pytest.mark.parametrize("kind", list(AlertKind))
def test_every_kind_has_a_complete_row(kind):
    row = endings.BY_KIND[kind.value]
    assert row.kind == kind.value and row.emoji.strip()
    assert isinstance(row.urgency, Urgency)
    assert set(row.words) == set(LANGUAGES)
    for lang in LANGUAGES:
        assert row.words[lang].headline.strip() and row.words[lang].detail.strip()
        assert render.kind_words(kind, lang) == row.words[lang]
    assert DEFAULT_LEVELS[kind.value] in LEVELS


def test_the_table_and_the_kinds_agree():
    assert [e.kind for e in endings.ENDINGS] == [k.value for k in AlertKind]
    assert len(endings.BY_KIND) == len(endings.ENDINGS)  # no kind twice
    assert set(URGENCY_LEVELS) == set(Urgency)
    assert tuple(e.kind for e in endings.ENDINGS if e.recorded) == spool.FINAL_STATES
    assert tuple(k.value for k in AlertKind if k.is_state) == ALERT_STATES
    states = {s.value for s in decide.RunState}
    for row in endings.ENDINGS:
        assert row.run_state is None or row.run_state in states
        assert not row.recorded or row.run_state is not None  # a recorded ending is a transition
    # Every recorded state is a transition the state machine makes, with the row's alert.
    for state in spool.FINAL_STATES:
        result = decide.transition(decide.RunState.RUNNING, decide.Event.final(state))
        assert result == (decide.RunState(state), AlertKind(state))


def test_every_language_has_every_shared_word():
    keys = {lang: set(render._WORDS[lang]) for lang in LANGUAGES}
    assert set(render._WORDS) == set(LANGUAGES)
    for lang in LANGUAGES:
        assert keys[lang] == keys["en"], lang
        assert all(text.strip() for text in render._WORDS[lang].values())


@pytest.mark.parametrize("code", sorted(REASONS))
def test_every_reason_is_worded_in_every_language(code):
    assert set(REASONS[code]) == set(LANGUAGES)
    templates = "".join(REASONS[code].values())
    reason = Reason(code, {k: v for k, v in REASON_ARGS.items() if "{" + k in templates})
    texts = {lang: reason.text(lang) for lang in LANGUAGES}
    assert all(texts.values()), texts
    assert texts["en"] != texts["zh"]
    zh_words = set(ASCII_WORD.findall(texts["zh"])) - set(ASCII_WORD.findall(str(reason.args)))
    assert zh_words <= NAMES, zh_words  # names, not English prose


def test_a_chinese_kill_or_stall_alert_says_why_in_chinese():
    killed = sample_alert(AlertKind.KILLED, detail="killed (English)", reason="no_exit_record")
    assert render.summary(killed, "zh") == "进程被杀死（SIGKILL 或解释器崩溃；没有退出记录）"
    assert render.summary(killed, "en") == "killed (SIGKILL or crash of the interpreter; no exit record)"
    stalled = sample_alert(AlertKind.STALLED, detail="no heartbeat for 42s", reason="frozen",
                           reason_args={"silent": 42.0, "timeout": 30.0})
    assert dict(render.facts(stalled, "zh"))["原因"].startswith("已 42 秒没有心跳（卡住超时 30 秒）")
    assert "the process is frozen" in dict(render.facts(stalled, "en"))["Cause"]


def test_old_records_with_free_text_detail_still_render():
    old = sample_alert(AlertKind.KILLED, detail="died while the daemon was down; no heartbeat recorded")
    data = old.to_dict()
    del data["reason"], data["reason_args"]  # as written before reasons existed
    again = Alert.from_dict(data)
    assert again.reason is None and again.why is None
    assert render.summary(again, "zh") == "died while the daemon was down; no heartbeat recorded"
    assert "died while the daemon was down" in render_bark(again, "en").body
    # A reason this version does not know (a newer daemon's record) falls back to the text too.
    newer = sample_alert(AlertKind.KILLED, detail="preempted by the scheduler", reason="preempted")
    assert render.summary(newer, "zh") == "preempted by the scheduler"
    assert "preempted by the scheduler" in render_markdown(newer, "en")[1]


def test_oom_reasons_set_the_headline():
    alert = sample_alert(AlertKind.KILLED, detail=None, reason="oom_kernel",
                         reason_args={"line": REASON_ARGS["line"]})
    assert render.headline(alert, "zh").startswith("被 OOM killer 杀死")
    assert render.summary(alert, "zh") == f"被 OOM killer 杀死（内核日志：{REASON_ARGS['line']}）"
