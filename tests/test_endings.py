"""The endings table is complete: every kind, every field, every language, every word."""

from __future__ import annotations

import re

import pytest

from sentinel.channels.bark import DEFAULT_LEVELS, LEVELS, URGENCY_LEVELS, render_bark
from sentinel.channels.dingtalk import render_markdown
from sentinel.formats import spool
from sentinel.model import endings, render, run_states
from sentinel.model.alerts import ALERT_STATES, Alert, AlertKind
from sentinel.model.endings import LANGUAGES, REASONS, Reason, Urgency
from tests.fakes.samples import sample_alert

# Sample parameters for every reason template (a new parameter needs a sample here).
REASON_ARGS = {"line": "Out of memory: Killed process 4 (python)", "path": "/sys/fs/cgroup/x/memory.events",
               "last_beat": 1_750_000_000.0, "silent": 42.0, "timeout": 30.0}
# jobs: a job's ending, the scheduler's, the GPU's and NCCL's words
REASON_ARGS.update({
    "job": "4242", "ranks": 4, "s": "s", "unseen": 1, "stopped": 2, "others": 3, "names": "1, 2",
    "rank": 3, "local_rank": 3, "host": "gpu7", "pid": 1003, "who": "torchrun", "step": 1200,
    "ending": Reason("rank_oom").as_arg(),
    "stall": Reason("stuck", {"silent": 42.0, "timeout": 30.0}).as_arg(),
    "scheduler": Reason("slurm_cancelled").as_arg(), "signal": "SIGKILL", "code": 79,
    "message": "RuntimeError: boom", "limit": "01:00:00", "restarts": "1", "state": "NODE_FAIL",
    "reason": "NodeDown", "bus": "0000:c6:00", "seconds": "480", "op": "ALLREDUCE", "seq": " #1580",
    "at_rank": Reason("nccl_rank", {"rank": 0}).as_arg(), "ran": 600.06,
    "meaning": {"en": "GPU has fallen off the bus", "zh": "GPU 已从总线上掉线"},
    "gpu": Reason("gpu_xid", {"bus": "0000:c6:00", "code": 79,
                              "meaning": {"en": "gone", "zh": "掉线"}}).as_arg(),
    "after": 10.0,  # containers: seconds from docker stop's SIGTERM to the death
})
REASON_ARGS.update({"count": 3, "pids": "11, 12, 13", "rss": "48.0 MiB"})  # survivors
ASCII_WORD = re.compile(r"[A-Za-z]{2,}")
# Names that stay as they are in Chinese text.
NAMES = {"OOM", "killer", "cgroup", "SIGKILL", "SIGTERM", "SIGINT", "rank", "PID", "GPU", "PCI", "Xid",
         "Slurm", "scancel", "NCCL", "docker", "stop"}


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
    states = {s.value for s in run_states.RunState}
    for row in endings.ENDINGS:
        assert row.run_state is None or row.run_state in states
        assert not row.recorded or row.run_state is not None  # a recorded ending is a transition
    # Every recorded state is a transition the state machine makes, with the row's alert.
    for state in spool.FINAL_STATES:
        result = run_states.transition(run_states.RunState.RUNNING, run_states.Event.final(state))
        assert result == (run_states.RunState(state), AlertKind(state))


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


def test_a_job_reason_is_worded_part_by_part_in_each_language():
    rank = Reason("rank_label", {"rank": 3, "local_rank": 3, "host": "gpu7", "pid": 1003})
    said = Reason("job_rank_ended", {"job": "4242", "rank": rank.as_arg(),
                                     "ending": Reason("rank_oom").as_arg(),
                                     "step": Reason("at_step", {"step": 1200}).as_arg()})
    said = said.with_notes([Reason("stopped_others", {"who": "torchrun", "others": 3})])
    assert said.text("en") == ("Job 4242: rank 3 (local rank 3, host gpu7, pid 1003) was killed by the "
                               "OOM killer at step 1,200; torchrun stopped the other 3 ranks")
    assert said.text("zh") == ("作业 4242：rank 3（本机 rank 3，主机 gpu7，PID 1003）被 OOM killer 杀死"
                               "（第 1,200 步）；torchrun 已停止其余 3 个 rank")
    # A part of another version's record is left out, never raised; nesting is bounded.
    assert Reason("job_folded", {"job": {"code": "no-such-code"}}).text("en") == "part of job 's alert"
    deep: dict = {"code": "job_folded", "args": {"job": "x"}}
    for _ in range(50):
        deep = {"code": "job_folded", "args": {"job": deep}}
    assert Reason("job_folded", {"job": deep}).text("en") is not None


def _typed_names(module: object, class_name: str) -> dict[str, str]:
    """The members a module declares for mypy (its ``if TYPE_CHECKING:`` class)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {t.id: v.value for t, v in ((s.targets[0], s.value) for s in node.body
                                               if isinstance(s, ast.Assign))
                    if isinstance(t, ast.Name) and isinstance(v, ast.Constant)}
    raise AssertionError(f"no class {class_name}")


def test_the_names_typed_code_uses_are_the_rows() -> None:
    from sentinel.model import alerts

    assert _typed_names(alerts, "AlertKind") == {k.name: k.value for k in AlertKind}
    assert _typed_names(run_states, "RunState") == {s.name: s.value for s in run_states.RunState}
    assert [s.value for s in run_states.RunState] == list(endings.RUN_STATES)


@pytest.mark.parametrize("kind", list(AlertKind))
def test_every_ending_pings_healthchecks_and_has_a_severity(kind: AlertKind) -> None:
    from sentinel.channels.alertmanager import AlertmanagerChannel
    from sentinel.fleet.healthchecks import ending_suffix

    row = kind.ending
    suffix = ending_suffix(sample_alert(kind, exit_code=None))
    if row.outcome is endings.Outcome.NEUTRAL:
        assert suffix is None  # a message or a test is not about the run's life
    elif not row.ends_run:
        assert suffix == "/log" or (suffix == "/fail" and kind is AlertKind.GPU_FAULT)
    else:
        # Every ending of a run ends its per_run check: success, or a failure.
        assert suffix == ("" if row.outcome is endings.Outcome.SUCCESS else "/fail"), kind
    channel = AlertmanagerChannel("am", {"urls": ["http://127.0.0.1:9093"]})
    assert channel.payload(sample_alert(kind))[0]["labels"]["severity"] == row.severity
    assert row.severity in endings.SEVERITIES


def test_scheduler_endings_fail_a_per_run_check_with_the_exit_code_when_known() -> None:
    from sentinel.fleet.healthchecks import ending_suffix

    for kind in (AlertKind.TIME_LIMIT, AlertKind.CANCELLED, AlertKind.PREEMPTED, AlertKind.NODE_FAILURE,
                 AlertKind.GPU_FAULT):
        assert ending_suffix(sample_alert(kind, exit_code=None)) == "/fail"
    assert ending_suffix(sample_alert(AlertKind.CRASHED, exit_code=3)) == "/3"
    assert ending_suffix(sample_alert(AlertKind.TIME_LIMIT, exit_code=0)) == "/fail"


def test_alertmanager_pages_for_deaths_and_warns_for_stops_and_stalls() -> None:
    assert AlertKind.TERMINATED.ending.severity == "warning"
    assert AlertKind.STALLED.ending.severity == "warning"
    assert AlertKind.KILLED.ending.severity == "critical"
    assert AlertKind.FINISHED.ending.severity == "info"


def test_one_word_table_says_every_death_in_every_language() -> None:
    from sentinel.model import exit_status

    assert render._WORDS is endings.PHRASES and exit_status._WORDS is endings.DEATH_WORDS
    for key, table in endings.DEATH_WORDS.items():
        assert set(table) == set(LANGUAGES), key
        for lang in LANGUAGES:
            said = exit_status.words("SIGKILL" if key != "exited" else None, 3, lang)
            assert said is not None and all(part.strip() for part in said)
