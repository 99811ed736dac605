"""Adding a kind of ending is one row in sentinel/model/endings.py plus the code that detects it.

The test copies the package, adds one throw-away row (``evicted``) to the
copy's table and nothing else, and runs every consumer of the table in a
fresh interpreter on that copy: the kinds and states, the state machine, the
words, every channel's payload, the healthchecks ping, the Prometheus
export and Alertmanager's severity. A consumer that keeps its own list of
kinds fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import sentinel

REPO = Path(__file__).resolve().parent.parent
ROW = '''    Ending("evicted", "🧹", Urgency.HIGH, {
        "en": Words("Evicted", "the cluster evicted the run's pod"),
        "zh": Words("被驱逐", "集群驱逐了运行所在的 Pod"),
    }, Outcome.FAILURE, Tone.BAD, "broom", "critical", Ping.FAIL, run_state="evicted"),
'''
ANCHOR = '    Ending("message", '

# Runs in the copy. Its detection is the job verdict below (Event.job_ended), as a
# scheduler's would be; everything else must follow from the row.
CONSUMERS = r'''
import json, sys, types
import sentinel
from sentinel.model import endings, render
from sentinel.model.alerts import ALERT_STATES, AlertKind
from sentinel.channels import build_channel
from sentinel.channels.apprise_bridge import _notify_type
from sentinel.channels.bark import DEFAULT_LEVELS
from sentinel.channels.console import render_text
from sentinel.model import run_states
from sentinel.fleet import healthchecks, metrics
from tests.fakes.samples import sample_alert

kind = AlertKind("evicted")
out = {"package": sentinel.__file__, "is_state": kind.is_state, "alert_on": "evicted" in ALERT_STATES}
state = run_states.RunState("evicted")
out["terminal"] = state.is_terminal
moved = run_states.transition(run_states.RunState.RUNNING, run_states.Event.job_ended(kind))
out["transition"] = [v.value for v in moved]
out["replay"] = run_states.replay([AlertKind.STALLED, kind])[0].value
alert = sample_alert(kind)
out["title"] = {lang: render.title(alert, lang) for lang in endings.LANGUAGES}
out["bark_level"] = DEFAULT_LEVELS["evicted"]
OPTIONS = {
    "bark": {"url": "https://api.day.app/abcdefghijklmnop"},
    "dingtalk": {"webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=abcdef0123456789"},
    "discord": {"webhook_url": "https://discord.com/api/webhooks/123/abcdefghijkl"},
    "lark": {"webhook_url": "https://open.feishu.cn/open-apis/bot/v2/hook/abcdef-0123"},
    "slack": {"webhook_url": "https://hooks.slack.com/services/T000/B000/abcdefghijkl"},
    "telegram": {"bot_token": "123456:abcdefghijklmnopqrstuvwxyz", "chat_id": "42"},
    "wecom": {"webhook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abcdef-0123"},
    "ntfy": {"url": "https://ntfy.sh/abcdefghijkl"},
    "alertmanager": {"urls": ["http://127.0.0.1:9093"]},
    "webhook": {"url": "http://127.0.0.1:9/hook"},
    "email": {"smtp_server": "127.0.0.1", "sender": "a@example.org", "to": ["b@example.org"]},
}
payloads = {}
for type_name, options in OPTIONS.items():
    channel = build_channel(type_name, {"type": type_name, **options})
    make = next(getattr(channel, m) for m in ("payload", "request", "compose") if hasattr(channel, m))
    payloads[type_name] = str(make(alert))
payloads["console"] = render_text(alert)
out["payloads"] = payloads
out["ntfy"] = build_channel("ntfy", {"type": "ntfy", **OPTIONS["ntfy"]}).request(alert)[1]
out["severity"] = build_channel("alertmanager", {"type": "alertmanager", **OPTIONS["alertmanager"]}
                                ).payload(alert)[0]["labels"]["severity"]
out["apprise"] = _notify_type(types.SimpleNamespace(NotifyType=types.SimpleNamespace(
    SUCCESS="success", INFO="info", WARNING="warning", FAILURE="failure")), kind)
out["healthchecks"] = healthchecks.ending_suffix(alert)
exported = metrics.Metrics(types.SimpleNamespace(host="gpu-box"))
exported.endings[kind.value] += 1
out["metrics"] = exported.exposition().decode()
print(json.dumps(out))
'''


def _copy_with_row(tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(Path(sentinel.__file__).parent, root / "sentinel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    table = root / "sentinel" / "model" / "endings.py"
    text = table.read_text(encoding="utf-8")
    assert text.count(ANCHOR) == 1
    table.write_text(text.replace(ANCHOR, ROW + ANCHOR), encoding="utf-8")
    return root


def test_a_new_ending_is_one_row_and_every_consumer_handles_it(tmp_path: Path) -> None:
    root = _copy_with_row(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", CONSUMERS], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["package"].startswith(str(root))  # the copy with the row, not the checkout
    assert out["is_state"] and out["alert_on"] and out["terminal"]
    assert out["transition"] == ["evicted", "evicted"]
    assert out["replay"] == "evicted"
    assert out["title"]["en"].startswith("🧹 Evicted") and out["title"]["zh"].startswith("🧹 被驱逐")
    assert out["bark_level"] == "timeSensitive"  # Urgency.HIGH
    for type_name, payload in out["payloads"].items():
        assert "Evicted" in payload, type_name
    assert out["ntfy"]["Tags"] == "broom" and out["ntfy"]["Priority"] == "4"
    assert out["severity"] == "critical"
    assert out["apprise"] == "failure"
    assert out["healthchecks"] == "/fail"
    assert 'sentinel_runs{state="evicted"} 0.0' in out["metrics"]
    assert 'ending="evicted"} 1.0' in out["metrics"]
