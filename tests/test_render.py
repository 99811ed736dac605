"""Alert content: what happened in the first words, the facts, both languages."""

from __future__ import annotations

import pytest

from sentinel.channels.bark import render_bark
from sentinel.channels.console import render_text
from sentinel.channels.dingtalk import digest_fit, render_digest_markdown, render_markdown
from sentinel.model.alerts import AlertKind
from sentinel.model.render import error_tail, facts, format_duration, headline, language_of, summary
from tests.fakes.samples import sample_alert

HEADLINES = {
    AlertKind.FINISHED: ("Finished: resnet50-lr3e-4", "训练完成: resnet50-lr3e-4"),
    AlertKind.CRASHED: ("Crashed: resnet50-lr3e-4", "训练崩溃: resnet50-lr3e-4"),
    AlertKind.ABORTED: ("Aborted: resnet50-lr3e-4", "训练中止: resnet50-lr3e-4"),
    AlertKind.TERMINATED: ("Terminated (SIGTERM): resnet50-lr3e-4", "被终止 (SIGTERM): resnet50-lr3e-4"),
    AlertKind.KILLED: ("Killed by the OOM killer: resnet50-lr3e-4",
                       "被 OOM killer 杀死（内存不足）: resnet50-lr3e-4"),
    AlertKind.STALLED: ("Stalled: resnet50-lr3e-4", "训练卡住: resnet50-lr3e-4"),
    AlertKind.RECOVERED: ("Recovered: resnet50-lr3e-4", "已恢复: resnet50-lr3e-4"),
    AlertKind.LOST: ("Lost: resnet50-lr3e-4", "运行丢失: resnet50-lr3e-4"),
    AlertKind.TIME_LIMIT: ("Time limit reached: resnet50-lr3e-4", "达到时间限制: resnet50-lr3e-4"),
    AlertKind.CANCELLED: ("Cancelled: resnet50-lr3e-4", "被取消: resnet50-lr3e-4"),
    AlertKind.PREEMPTED: ("Preempted: resnet50-lr3e-4", "被抢占: resnet50-lr3e-4"),
    AlertKind.NODE_FAILURE: ("Node failure: resnet50-lr3e-4", "节点故障: resnet50-lr3e-4"),
    AlertKind.GPU_FAULT: ("GPU fault: resnet50-lr3e-4", "GPU 故障: resnet50-lr3e-4"),
    AlertKind.MESSAGE: ("Message from alice · resnet50-lr3e-4", "来自 alice · resnet50-lr3e-4 的消息"),
    AlertKind.TEST: ("Test alert: run-sentinel", "测试告警: run-sentinel"),
}


@pytest.mark.parametrize("kind", list(AlertKind))
def test_headline_says_what_happened_first(kind):
    en, zh = HEADLINES[kind]
    alert = sample_alert(kind)
    assert headline(alert, "en") == en
    assert headline(alert, "zh") == zh
    assert render_text(alert, "en").split("\n", 1)[0].endswith(en)
    assert render_bark(alert, "zh").title.endswith(zh)
    assert render_markdown(alert, "en")[0].endswith(en)


def test_killed_without_oom_cause():
    alert = sample_alert(AlertKind.KILLED, detail=None)
    assert headline(alert) == "Killed: resnet50-lr3e-4"
    assert summary(alert) == "killed (SIGKILL or crash of the interpreter; no exit record)"


def test_summaries():
    assert summary(sample_alert(AlertKind.CRASHED)) == \
        "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert summary(sample_alert(AlertKind.CRASHED, error=None)) == "exit code 1"
    assert summary(sample_alert(AlertKind.STALLED)) == "no progress for 12m 30s"
    assert summary(sample_alert(AlertKind.STALLED), "zh") == "已 12分30秒 无进展"
    assert summary(sample_alert(AlertKind.FINISHED)) == "after 2h 12m"
    assert summary(sample_alert(AlertKind.KILLED)) == \
        "OOM killer: Out of memory: Killed process 41233 (python)"
    assert summary(sample_alert(AlertKind.LOST, detail="host rebooted at 03:12")) == "host rebooted at 03:12"
    assert summary(sample_alert(AlertKind.MESSAGE)) == "epoch 3 done: val acc 0.91"


def test_facts_in_both_languages():
    alert = sample_alert(AlertKind.CRASHED)
    assert facts(alert, "en") == [
        ("Run", "resnet50-lr3e-4"), ("Project", "cifar10"), ("Host", "alice@gpu-box-3"), ("PID", "41233"),
        ("Duration", "2h 12m"), ("Step", "12,345"), ("Metrics", "loss=0.4123, acc=0.8812"),
        ("Last heartbeat", "8s ago"), ("Exit code", "1"),
    ]
    assert [label for label, _ in facts(alert, "zh")] == [
        "运行", "项目", "主机", "PID", "时长", "步数", "指标", "最后心跳", "退出码"]
    assert dict(facts(alert, "zh"))["最后心跳"] == "8秒前"
    stalled = dict(facts(sample_alert(AlertKind.STALLED), "en"))
    assert stalled["Last progress"] == "12m 30s ago"


def test_workspace_and_no_heartbeat():
    alert = sample_alert(AlertKind.KILLED, labels={"project": "p", "workspace": "team"}, last_beat=None)
    got = dict(facts(alert))
    assert got["Project"] == "team/p" and got["Last heartbeat"] == "never"


@pytest.mark.parametrize("seconds, en, zh", [
    (5, "5s", "5秒"), (65, "1m 05s", "1分5秒"), (3 * 3600 + 120, "3h 02m", "3小时2分"),
    (2 * 86400 + 3600, "2d 1h", "2天1小时"), (None, "?", "?"), (-3, "0s", "0秒"),
])
def test_format_duration(seconds, en, zh):
    assert format_duration(seconds, "en") == en
    assert format_duration(seconds, "zh") == zh


def test_error_tail_keeps_the_end():
    error = "\n".join(f"line {i}" for i in range(100))
    assert error_tail(sample_alert(error=error), max_lines=3) == "line 97\nline 98\nline 99"
    long_line = "x" * 5000 + "END"
    tail = error_tail(sample_alert(error=long_line), max_chars=100)
    assert len(tail) == 100 and tail.endswith("END")


def test_bark_body_is_short_and_useful():
    text = render_bark(sample_alert(AlertKind.KILLED), "en")
    assert text.subtitle == "cifar10 · gpu-box-3 · 2h 13m"
    assert text.body.splitlines() == [
        "OOM killer: Out of memory: Killed process 41233 (python)",
        "Step 12,345 · loss=0.4123, acc=0.8812",
        "Last heartbeat 8s ago · pid 41233",
    ]
    huge = render_bark(sample_alert(AlertKind.MESSAGE, text="x" * 9000))
    assert len(huge.body) <= 1000


def test_markdown_has_link_error_and_product_keyword():
    title, text = render_markdown(sample_alert(AlertKind.CRASHED), "zh")
    assert title == "💥 训练崩溃: resnet50-lr3e-4"
    assert "[在 SwanLab 中打开](https://swanlab.cn/@alice/cifar10/runs/x1y2z3)" in text
    assert "> RuntimeError: CUDA error: an illegal memory access was encountered" in text
    assert "run-sentinel" in text


def test_markdown_escapes_markup_in_names():
    _, text = render_markdown(sample_alert(run_name="*best*_run #1"))
    assert "- **Run**: \\*best\\*_run #1" in text


def test_digest_fit_and_render():
    alerts = [sample_alert(n=i) for i in range(200)]
    count = digest_fit(alerts, "en", max_bytes=18000)
    assert 1 < count < 200
    _, text = render_digest_markdown(alerts[:count], "en")
    assert len(text.encode("utf-8")) <= 18000
    assert text.count("Crashed: resnet50-lr3e-4") == count
    _, over = render_digest_markdown(alerts[: count + 1], "en", max_bytes=10**9)
    assert len(over.encode("utf-8")) > 18000


@pytest.mark.parametrize("value, expected", [
    ("zh", "zh"), ("zh-CN", "zh"), ("en_US", "en"), ("fr", "en"), (None, "en")])
def test_language_of(value, expected):
    assert language_of(value) == expected


def test_test_alert_text_in_both_languages():
    assert "can reach you" in render_text(sample_alert(AlertKind.TEST, text=None))
    assert "看到这条消息" in render_text(sample_alert(AlertKind.TEST, text=None), "zh")


def test_a_sentinel_run_child_killed_by_sigkill_reads_like_any_kill():
    from sentinel.model.render import title

    alert = sample_alert(AlertKind.TERMINATED, signal="SIGKILL", exit_code=None)
    watched = sample_alert(AlertKind.KILLED, detail=None, signal="SIGKILL")
    assert headline(alert) == headline(watched) == "Killed (SIGKILL): resnet50-lr3e-4"
    assert title(alert) == title(watched)
    assert summary(alert) == summary(watched)
    assert summary(alert, "zh") == summary(watched, "zh")
    assert headline(sample_alert(AlertKind.TERMINATED)) == "Terminated (SIGTERM): resnet50-lr3e-4"


def test_labels_and_trend_in_the_facts_of_every_language():
    alert = sample_alert(AlertKind.KILLED, labels={"project": "cifar10", "gpu": "0", "mode": "cloud"},
                         trend_metric="loss", trend=[2.0, 1.5, 1.0, 0.5, 0.25])
    en, zh = dict(facts(alert, "en")), dict(facts(alert, "zh"))
    assert en["Labels"] == zh["标签"] == "gpu=0"  # SwanLab's own labels are shown elsewhere
    assert en["Trend"] == zh["趋势"] == "loss █▆▄▂▁ 2 → 0.25 (min 0.25, max 2)"
    from sentinel.channels.bark import render_bark

    assert "loss █▆▄▂▁" in render_bark(alert).body and "gpu=0" in render_bark(alert).body
    short = sample_alert(AlertKind.KILLED, trend_metric="loss", trend=[1.0])
    assert "Trend" not in dict(facts(short))  # one point is no picture


@pytest.mark.parametrize("error", [
    # as Python prints it, and as SwanLab records a Ctrl-C: ending in the frame it landed in
    "Traceback (most recent call last):\n  File \"train.py\", line 9, in <module>\n    time.sleep(0.1)\n"
    "KeyboardInterrupt\n",
    "Traceback (most recent call last):\n  File \"train.py\", line 9, in <module>\n    time.sleep(0.1)\n",
])
def test_a_ctrl_c_alert_says_the_interrupt_not_the_innermost_frame(error: str) -> None:
    alert = sample_alert(AlertKind.ABORTED, error=error, signal="SIGINT", exit_code=None)
    assert summary(alert, "en") == "KeyboardInterrupt"
