"""Write docs/config-reference.md from the configuration validator itself.

    python3 docs/gen_config_reference.py          # rewrite the page
    python3 docs/gen_config_reference.py --check  # exit 1 if the page is stale

The keys are not copied from the code but asked of it: each block's known
keys come from the validator's own "unknown key" answer to a probe
(``sentinel.daemon.config.parse_config``), the channel types and their options from
the channel registry (each class's ``OPTIONS``), the alert states from
``sentinel.model.alerts.ALERT_STATES``, a run's arguments from the signature of
``sentinel.training.run_options.run_options``, and the defaults from the config model.
Only the sentences are written here, one per key; a key the validator knows
and this file does not describe stops the generator (and tests/test_docs.py),
so the reference cannot fall behind the code.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "config-reference.md"
PROBE = "zz_unknown_probe_key"

sys.path.insert(0, str(ROOT))

from sentinel.channels import REGISTRY  # noqa: E402
from sentinel.daemon.config import (  # noqa: E402
    Budgets,
    Config,
    ConfigError,
    InlineChannelPolicy,
    MessageLimits,
    parse_config,
)
from sentinel.fleet.keys import DEFAULT_GRACE, DEFAULT_HEALTHCHECKS_URL, DEFAULT_PERIOD  # noqa: E402
from sentinel.model.alerts import ALERT_STATES  # noqa: E402
from sentinel.training.run_options import run_options  # noqa: E402

# key path -> (default, meaning). The default is text; "" when the key has none.
TOP: Dict[str, Tuple[str, str]] = {
    "spool": ("the spool rule", "Where runs and the daemon meet: `$SENTINEL_SPOOL`, else "
              "`/var/lib/sentinel/spool` if it exists and is writable, else "
              "`$XDG_STATE_HOME/sentinel/spool`. Training processes use the same rule, "
              "so set it only together with `SENTINEL_SPOOL` for them. An absolute path."),
    "state_dir": ("`$STATE_DIRECTORY/state` under systemd's `StateDirectory=`, else `<spool>/.daemon`",
                  "The daemon's outbox, alert journal, inline channels and archive. Must belong to the "
                  "daemon's user, mode 0700, no symlinks inside: the daemon checks this at every start and "
                  "otherwise exits 78 with one log line. The system unit uses `/var/lib/sentinel/state`, "
                  "outside the world-writable spool."),
    "language": ("", "`en` or `zh`, for alert texts. A channel's own `language` outranks a run's, which "
                 "outranks this one."),
    "stall_timeout": ("", "Alive but no progress and no heartbeat for this long: `stalled`. A run may set "
                      "its own."),
    "alert_on": ("every state", "Which states are delivered (all are journalled); the states are listed "
                 "[below](#alert-states). A run may narrow it with its own `alert_on`."),
    "channel_modules": ("none", "Absolute paths of Python files defining your own channel types "
                        "(see [Adding a channel](adding-a-channel.md#your-own-channel)), loaded before "
                        "`channels` is checked. Each file and its directory must belong to root or the "
                        "daemon's user and not be writable by group or others."),
    "channels": ("`console: {type: console}`", "Named channels: `type`, optional `language`, `users`, "
                 "`groups` and the type's options ([Channel entries](#channel-entries))."),
    "default_channels": ("every configured channel", "Channels for runs that name none. Each must be "
                         "defined under `channels`."),
    "retention": ("", "Ended runs are moved into the daemon's archive and deleted, with their alert "
                  "journal, this long later."),
    "dead_letter_retention": ("", "How long undeliverable alerts are kept for inspection."),
    "retry_for": ("", "Transient delivery failures are retried (capped exponential backoff) at least "
                  "this long."),
    "rescan_interval": ("", "Full spool rescan, the safety net under inotify: it lists the spool for runs "
                        "it missed, and looks at the runs the daemon could not watch (the kernel's "
                        "`fs.inotify.max_user_watches` used up, logged once; or more than 1024 run "
                        "directories of one user) with a few stats, reading one only when its messages or "
                        "final record changed; after a lost inotify event (queue overflow) it reads every "
                        "run."),
    "log_level": ("", "`debug`, `info`, `warning` or `error`."),
    "trend_metric": ("the first scalar a run logs", "The metric every alert draws as a sparkline "
                     "(`loss █▆▄▂▁ 2.3 → 0.41 (min 0.40, max 2.3)`)."),
    "trend_points": ("", "How many of its last values (one per heartbeat that saw progress), 2 to 48."),
    "inline_channels": ("shared spool: `allow: false`; private spool: allowed, any host, at most 4",
                        "What a run may bring along as inline channels "
                        "(see [Shared hosts](shared-hosts.md))."),
    "message_limits": ("", "How many `run.send()` / `send_msg` messages are taken. Excess messages are "
                       "dropped and counted (one log line when a run starts dropping, one with the count "
                       "when it ends)."),
    "budgets": ("", "What one local user can make the daemon hold or do, in a shared spool "
                "([Per-user budgets](budgets.md)). A user over budget has their own excess refused, "
                "deferred or left unsent (and logged once a minute), never another user's."),
    "host": ("the hostname", "The name this daemon reports as (metrics, Alertmanager labels, "
             "healthchecks.io). Two daemons on one machine can act as two hosts. Letters, digits, `_`, `-`, "
             "`.` or `:`, at most 128."),
    "metrics": ("off", "Prometheus metrics and the status page ([Fleets](fleets.md))."),
    "healthchecks": ("off", "healthchecks.io as a dead-man's switch ([Fleets](fleets.md))."),
}

NESTED: Dict[str, Dict[str, Tuple[str, str]]] = {
    "inline_channels": {
        "allow": ("", "`true` or `false`: whether runs may bring channels at all."),
        "hosts": ("none", "Destination host names an inline channel may name: `api.day.app`, `*.slack.com` "
                  "for subdomains, `\"*\"` for any host. Required with `allow: true`. A channel type that "
                  "cannot say where it connects is refused unless `hosts` has `\"*\"`."),
        "types": ("every type", "Channel types a run may bring."),
        "max_per_run": ("", "Inline channels taken per run; extra ones are refused, never built."),
    },
    "message_limits": {
        "per_run_per_minute": ("", "Messages taken from one run in any 60 s."),
        "per_user_per_minute": ("", "Messages taken from all runs of one user in any 60 s."),
        "max_pending_per_user": ("", "Undelivered messages of one user at once."),
    },
    "budgets": {
        "runs_per_user": ("", "Runs of one user tracked at once; the next ones are admitted as these end."),
        "pidfds_per_user": ("", "Process and thread pidfds held for one user's watched runs."),
        "state_alerts_per_user_per_minute": ("", "State alerts of one user sent in any 60 s; more are "
                                             "decided and journalled but sent to no channel."),
        "refused_runs_remembered": ("", "Refused run ids remembered per user (the oldest are forgotten)."),
        "open_files": ("`0`", "The open-file limit (RLIMIT_NOFILE) asked for at start; 0: the hard limit."),
        "http_connections": ("", "Connections the metrics / status server serves at once."),
        "http_connections_per_peer": ("", "Connections it serves at once from one remote address, or "
                                      "from one local user (over loopback, the owner of the client's "
                                      "socket, at most a quarter of http_connections)."),
    },
    "metrics": {
        "listen": ("off", "`ADDRESS:PORT` of an HTTP server with `/metrics`, `/` and `/status.json` "
                   "(the status pages only to loopback clients)."),
        "textfile": ("off", "An absolute path such as `/var/lib/prometheus/node-exporter/sentinel.prom`, "
                     "rewritten atomically every 10 s, for node_exporter's textfile collector. At least one "
                     "of `listen` and `textfile` is required."),
    },
    "healthchecks": {
        "url": ("", "The base URL of healthchecks.io or your own instance."),
        "api_key": ("required", "A project's read-write API key; write it as `${ENV_VAR}`. Sent only in "
                    "request bodies, masked in every log line."),
        "period": ("", "The node check's period (healthchecks' minimum is 60 s)."),
        "grace": ("", "The node check's grace time."),
        "per_run": ("false", "`true`: also one check per run name, pinged when the daemon starts tracking "
                    "the run and when it ends."),
    },
}

CHANNEL_COMMON: Dict[str, str] = {
    "type": "Required: one of the channel types below.",
    "language": "`en` or `zh`; default: the run's language, else the top-level `language`.",
    "users": "A list of existing user names: only their runs may name this channel.",
    "groups": "A list of existing group names: only runs of their members may name this channel "
              "(with `users`, either admits).",
}

RUN_ARGUMENTS: Dict[str, str] = {
    "name": "The run's name in alerts (default: SwanLab's experiment name, else the script's name).",
    "channels": "A list of channel names from the daemon's config, or inline channel mappings such as "
                "`{\"type\": \"bark\", \"key\": \"...\"}` checked by that channel's own rules; at most 32. "
                "Empty: the daemon's `default_channels`.",
    "labels": "A mapping of label names (at most 64 characters) to strings or numbers, at most 64 labels; "
              "shown in every alert.",
    "stall_timeout": "Seconds or a duration, as the config's `stall_timeout`, for this run.",
    "heartbeat_interval": "Seconds or a duration between heartbeats (default 10 s, or "
                          "`SENTINEL_HEARTBEAT_INTERVAL`).",
    "language": "`en` or `zh`, for this run's alerts.",
    "spool_dir": "A path: the spool to record into (default: the spool rule).",
    "handle_sigterm": "`True` or `False`: record a default-disposition SIGTERM as `terminated`.",
    "alert_on": "A list of states, as the config's `alert_on`, for this run only.",
}


def duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def computed_defaults() -> Dict[str, str]:
    """Defaults read from the config model, by key path."""
    config = Config()
    out = {key: f"`{duration(getattr(config, key))}`"
           for key in ("stall_timeout", "retention", "dead_letter_retention", "retry_for", "rescan_interval")}
    out.update({"language": f"`{config.language}`", "log_level": f"`{config.log_level}`",
                "trend_points": f"`{config.trend_points}`",
                "inline_channels.allow": f"`{str(InlineChannelPolicy().allow).lower()}`",
                "inline_channels.max_per_run": f"`{InlineChannelPolicy().max_per_run}`",
                "healthchecks.url": f"`{DEFAULT_HEALTHCHECKS_URL}`",
                "healthchecks.period": f"`{duration(DEFAULT_PERIOD)}`",
                "healthchecks.grace": f"`{duration(DEFAULT_GRACE)}`"})
    limits = MessageLimits()
    out["message_limits"] = ", ".join(f"`{key}: {getattr(limits, key)}`" for key in vars(limits))
    for key, value in vars(limits).items():
        out[f"message_limits.{key}"] = f"`{value}`"
    budgets = Budgets()
    out["budgets"] = ", ".join(f"`{key}: {getattr(budgets, key)}`" for key in vars(budgets))
    for key, value in vars(budgets).items():
        out[f"budgets.{key}"] = f"`{value}`"
    return out


def known_keys(block: str = "") -> List[str]:
    """The keys the validator accepts at the top level or in ``block``, from its own error message."""
    text = f"{block}: {{{PROBE}: 1}}" if block else f"{PROBE}: 1"
    try:
        parse_config(text, env={})
    except ConfigError as exc:
        match = re.search(re.escape(PROBE) + r"[^\n]*unknown key \(known keys: ([^)]*)\)", str(exc))
        if match:
            return [key.strip() for key in match.group(1).split(",")]
    raise RuntimeError(f"the validator did not list the keys of {block or 'the top level'}")


def run_argument_names() -> List[str]:
    return [name for name, param in inspect.signature(run_options).parameters.items()
            if param.kind is inspect.Parameter.KEYWORD_ONLY and name != "more_problems"]


def validator_keys() -> Dict[str, List[str]]:
    """Every key the validator knows: "" for the top level, a block's name for its keys,
    "channels.<type>" for a channel type's options, "run" for a run's arguments."""
    keys: Dict[str, List[str]] = {"": known_keys()}
    for block in NESTED:
        keys[block] = known_keys(block)
    for type_name, cls in sorted(REGISTRY.items()):
        keys[f"channels.{type_name}"] = list(cls.OPTIONS)
    keys["run"] = run_argument_names()
    return keys


def _undescribed(known: Sequence[str], described: Mapping[str, Any], where: str) -> List[str]:
    missing = [f"{where}{key}" for key in known if key not in described]
    extra = [f"{where}{key} (described, but the validator does not know it)" for key in described
             if key not in known]
    return missing + extra


def problems(keys: Mapping[str, List[str]]) -> List[str]:
    out = _undescribed(keys[""], TOP, "")
    for block, described in NESTED.items():
        out += _undescribed(keys[block], described, f"{block}.")
    out += _undescribed(keys["run"], RUN_ARGUMENTS, "run argument ")
    return out


def table(rows: Sequence[Tuple[str, str, str]]) -> List[str]:
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{key}` | {default or '—'} | {meaning} |" for key, default, meaning in rows]
    return lines


def render(keys: Mapping[str, List[str]]) -> str:
    defaults = computed_defaults()

    def row(path: str, described: Tuple[str, str]) -> Tuple[str, str, str]:
        default, meaning = described
        return path.split(".")[-1], defaults.get(path, default), meaning

    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by docs/gen_config_reference.py from the validator: do not edit by hand. -->",
        "",
        "Every key the configuration validator (`sentinel/daemon/config.py`) accepts, read from the "
        "validator",
        "itself by `docs/gen_config_reference.py`; `tests/test_docs.py` fails when this page and the code",
        "disagree. How the file is found, `${ENV_VAR}` substitution and the error format are on",
        "[Configuration](configuration.md); a commented example is `config.example.yaml`.",
        "",
        "Durations are seconds or a number with a unit (`250ms`, `30s`, `10m`, `2h`, `7d`, `1w`,",
        "combinable as `1h30m`), longer than zero and at most 10 years.",
        "",
        "## Top-level keys",
        "",
    ]
    out += table([row(key, TOP[key]) for key in keys[""]])
    for block in NESTED:
        out += ["", f"## `{block}`", ""]
        out += table([row(f"{block}.{key}", NESTED[block][key]) for key in keys[block]])
    out += ["", "## Channel entries", "",
            "Each entry under `channels:` is `NAME: {type: TYPE, ...}`; a name is letters, digits, `_`, `-`",
            "or `.` (at most 64). Every entry takes:", "",
            "| key | meaning |", "| --- | --- |"]
    out += [f"| `{key}` | {meaning} |" for key, meaning in CHANNEL_COMMON.items()]
    out += ["", "and its type's options, checked by the channel class itself (an unknown option is an error",
            "naming the closest known one):", "",
            "| `type:` | options |", "| --- | --- |"]
    for path in sorted(k for k in keys if k.startswith("channels.")):
        type_name = path.split(".", 1)[1]
        options = ", ".join(f"`{opt}`" for opt in keys[path])
        out.append(f"| [`{type_name}`](channels/{type_name}.md) | {options} |")
    out += ["", "## Alert states", "",
            "The values `alert_on` (in the config and at a run's call), Bark's `level` and ntfy's `priority`",
            "keys take:", ""]
    out += [", ".join(f"`{state}`" for state in ALERT_STATES) + "."]
    out += ["", "## A run's arguments", "",
            "`sentinel.watch(...)` and `SentinelCallback(...)` take these keyword arguments, checked by",
            "the same rules as the config file at the call (`sentinel.common.rules.InvalidArgument`, naming",
            "every bad one at once); see [In your training code](recording.md).", "",
            "| argument | meaning |", "| --- | --- |"]
    out += [f"| `{name}` | {RUN_ARGUMENTS[name]} |" for name in keys["run"]]
    return "\n".join(out) + "\n"


def generate() -> str:
    keys = validator_keys()
    missing = problems(keys)
    if missing:
        raise SystemExit("docs/gen_config_reference.py: describe these keys: " + "; ".join(missing))
    return render(keys)


def main(argv: Sequence[str]) -> int:
    text = generate()
    if "--check" in argv:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE.relative_to(ROOT)} is stale: run python3 docs/gen_config_reference.py")
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

