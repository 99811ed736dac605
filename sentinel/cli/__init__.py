"""The `sentinel` command: daemon, status, history, check-config, test, run, mute, unmute.

Exit codes follow sysexits where one fits: 0 ok, 1 failure, 2 usage,
78 (EX_CONFIG) for a configuration that cannot be used.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from sentinel.common.logsetup import JournalFormatter, setup_logging, stderr_is_journal  # noqa: F401
from sentinel.daemon.config import (  # noqa: F401 (the config search, re-exported)
    ENV_CONFIG,
    SYSTEM_CONFIG,
    Config,
    ConfigError,
    default_config,
    find_config,
    load_config,
    resolve_config,
)
from sentinel.formats.spool import DAEMON_STATE_DIR

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78

log = logging.getLogger("sentinel")


def _report_config_error(exc: ConfigError) -> int:
    print(f"sentinel: {exc}", file=sys.stderr)
    return EXIT_CONFIG


# ---------------------------------------------------------------- commands


def cmd_daemon(args: argparse.Namespace) -> int:
    from sentinel.daemon.entry import run_daemon

    return run_daemon(args.config, args.log_level, args.log_format)


def _spool_and_state(args: argparse.Namespace) -> tuple[Path, Path]:
    """The spool and the daemon's state directory, from --spool or the config.
    Raises ConfigError only for a --config given explicitly."""
    if args.spool:
        spool_path = Path(args.spool)
        return spool_path, spool_path / DAEMON_STATE_DIR
    try:
        config = resolve_config(args.config)
    except ConfigError as exc:
        if args.config:
            raise
        # A config that is not ours to read (root's 0600 file) must not hide the runs.
        print(f"sentinel: ignoring the config ({exc.problems[0]}); using the default spool",
              file=sys.stderr)
        config = default_config()
    return config.spool_path(), config.state_path()


def _cannot_read(path: Path, what: str) -> Optional[str]:
    """What to say if ``path`` exists but this user may not read it (None: absent, or readable).

    An unreadable spool is not an empty one: saying "0 run(s)" would be a lie.
    """
    try:
        with os.scandir(path):
            pass
        if not os.access(path, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return (f"sentinel: cannot read the {what} {path}: {exc.strerror} (user {_user_name()}; "
                "ask its owner for access, or run this as a user who has it)")
    return None


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def cmd_status(args: argparse.Namespace) -> int:
    from sentinel.daemon import status

    try:
        spool_path, state_dir = _spool_and_state(args)
    except ConfigError as exc:
        return _report_config_error(exc)
    refused = _cannot_read(spool_path, "spool")
    if refused:
        print(refused, file=sys.stderr)
        return EXIT_FAILURE
    if not spool_path.is_dir():
        print(f"sentinel: no spool at {spool_path} (no run has started yet)", file=sys.stderr)
    report = status.collect(spool_path, state_dir, include_archive=args.all or bool(args.run))
    if args.run:
        return _status_of_one(report, args.run, state_dir, args.json)
    print(status.render_json(report) if args.json else status.render_table(report))
    return EXIT_OK


def _status_of_one(report: Any, wanted: str, state_dir: Path, as_json: bool) -> int:
    import json
    from dataclasses import asdict

    from sentinel.daemon import status
    from sentinel.delivery.outbox import read_journal
    from sentinel.formats.state_dir import StateDir

    found = status.find_run(report, wanted)
    if len(found) != 1:
        names = ", ".join(r.run_id for r in found)
        print(f"sentinel status: {'no run' if not found else 'several runs'} named {wanted!r}"
              f"{': ' + names if names else ''}", file=sys.stderr)
        return EXIT_FAILURE
    run = found[0]
    try:
        alerts = read_journal(StateDir(state_dir).outbox, run.run_id)
    except (OSError, ValueError):
        alerts = []  # the system daemon's journal is not ours to read
    if as_json:
        print(json.dumps({**asdict(run), "alerts": [a.to_dict() for a in alerts]}, ensure_ascii=False,
                         indent=2))
    else:
        print(status.render_detail(run, alerts))
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    setup_logging("warning")  # the file permission warning shows on stderr
    path = find_config(args.path)
    if path is None:
        config = default_config()
        print("no config file found: the embedded default is in use "
              f"(searched ${ENV_CONFIG}, {SYSTEM_CONFIG}, $XDG_CONFIG_HOME/sentinel/config.yaml)")
    else:
        try:
            config = load_config(path)
        except ConfigError as exc:
            return _report_config_error(exc)
        print(f"{path}: OK")
    print(f"  spool:            {config.spool_path()}")
    print(f"  language:         {config.language}")
    print(f"  stall timeout:    {config.stall_timeout:g}s")
    print(f"  alert on:         {', '.join(s for s in _state_order() if s in config.alert_on) or 'nothing'}")
    for chan in config.channels.values():
        print(f"  channel {chan.name}: type {chan.type}, language {chan.language}")
    print(f"  default channels: {', '.join(config.default_channels) or 'none'}")
    print(f"  host:             {config.host}")
    if config.metrics is not None:
        listen = config.metrics.listen
        where = f"http://{listen[0]}:{listen[1]}/metrics" if listen else "no HTTP"
        print(f"  metrics:          {where}"
              f"{', textfile ' + str(config.metrics.textfile) if config.metrics.textfile else ''}")
    if config.healthchecks is not None:
        hc = config.healthchecks
        print(f"  healthchecks:     {hc.url}, period {hc.period:g}s, grace {hc.grace:g}s"
              f"{', a check per run' if hc.per_run else ''} (API key set)")
    return EXIT_OK


def _state_order() -> Sequence[str]:
    from sentinel.model.alerts import ALERT_STATES

    return ALERT_STATES


def cmd_test(args: argparse.Namespace) -> int:
    setup_logging("info")
    try:
        config = resolve_config(args.config)
    except ConfigError as exc:
        return _report_config_error(exc)
    if args.channel and args.channel not in config.channels:
        known = ", ".join(config.channels) or "none"
        print(f"sentinel: no channel named {args.channel!r}; configured: {known}", file=sys.stderr)
        return EXIT_CONFIG
    from sentinel.cli import selftest

    return int(selftest.run_test(config, args.channel) or 0)


def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        args.parser.error("run: no command given (usage: sentinel run [--name NAME] -- CMD ...)")
    from sentinel.common.rules import InvalidArgument
    from sentinel.training import runner

    labels: dict[str, str] = {}
    for item in args.label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            args.parser.error(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    if args.project is not None:
        labels["project"] = args.project
    from sentinel.common.rules import channel_name
    from sentinel.formats import spool

    for name in args.channel or []:
        try:
            channel_name(name)
        except ValueError:
            continue  # not a name at all: the run's own checks say so, by the config's rules
        problem = _unknown_channel(name, spool.spool_dir(), None, "sentinel run")
        if problem:
            args.parser.error(f"--channel: {problem}")
    try:
        return runner.run_command(command, name=args.name, channels=args.channel or [], labels=labels,
                                  stall_timeout=args.stall_timeout)
    except InvalidArgument as exc:
        args.parser.error(str(exc).replace("sentinel run: ", "", 1))
        return EXIT_USAGE  # not reached: error() exits with this status


def cmd_history(args: argparse.Namespace) -> int:
    import json

    from sentinel.cli import history

    try:
        spool_path, state_dir = _spool_and_state(args)
    except ConfigError as exc:
        return _report_config_error(exc)
    if args.resend is not None:
        return _resend(args.resend, spool_path, state_dir)
    refused = _cannot_read(state_dir, "daemon's state directory") or _cannot_read(
        state_dir / "outbox", "alert journal")
    if refused:
        print(refused, file=sys.stderr)
        return EXIT_FAILURE
    deliveries = history.collect(state_dir, args.run)
    if args.json:
        print(json.dumps(history.as_json(deliveries), ensure_ascii=False, indent=2))
    elif deliveries:
        import shutil

        # The terminal's width ($COLUMNS wins); piped and no $COLUMNS: as wide as it needs.
        width = shutil.get_terminal_size((0, 0)).columns or None
        print(history.format_table(deliveries, width=width))
    else:
        print(f"no alerts journalled{' for ' + repr(args.run) if args.run else ''} in {state_dir}")
    return EXIT_OK


def _resend(alert_id: str, spool_path: Path, state_dir: Path) -> int:
    """Resend a dead letter: directly with no daemon running (under its state lock),
    else by a request the daemon takes (``sentinel.delivery.resend``): the outbox is its own."""
    from sentinel.delivery import outbox, resend
    from sentinel.formats.state_dir import StateDir, StateDirError

    if not outbox.is_alert_id(alert_id):
        print(f"sentinel: {alert_id!r} is not an alert id (the last column of sentinel history)",
              file=sys.stderr)
        return EXIT_USAGE
    readable = os.access(state_dir / "outbox", os.R_OK | os.X_OK)
    if readable:
        try:
            outbox.check_resendable(outbox.read_records(StateDir(state_dir).outbox), alert_id)
        except outbox.ResendRefused as exc:
            print(f"sentinel: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    state = StateDir(state_dir)
    try:
        lock_fd = state.lock() if readable else None
    except StateDirError:
        lock_fd = None  # not ours (root's daemon): ask the daemon
    if lock_fd is not None:
        try:
            channels = outbox.Outbox(state.outbox).resend(alert_id)
        except (outbox.ResendRefused, OSError) as exc:
            print(f"sentinel: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        finally:
            os.close(lock_fd)
        print(f"alert {alert_id} is pending again for {', '.join(channels)}; "
              "it goes out when the daemon runs")
        return EXIT_OK
    try:
        resend.request(spool_path, alert_id)
    except OSError as exc:
        print(f"sentinel: cannot ask the daemon to resend ({exc}); is it running on {spool_path}?",
              file=sys.stderr)
        return EXIT_FAILURE
    print(f"asked the daemon to resend alert {alert_id}; sentinel history shows it retrying once taken"
          + ("" if readable else " (the daemon's log says if it refused)"))
    return EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    from sentinel.cli.completion import script

    print(script(build_parser(), args.shell), end="")
    return EXIT_OK


def cmd_names(args: argparse.Namespace) -> int:
    from sentinel.cli.completion import runs_to_offer
    from sentinel.formats import spool

    spool_path = spool.spool_dir()
    if args.what == "channels":
        names = _known_channels(spool_path, None)[0] or []
    else:
        names = runs_to_offer(spool_path)
    print("\n".join(names))
    return EXIT_OK


def _spool_of(args: argparse.Namespace) -> Path:
    if getattr(args, "spool", None):
        return Path(args.spool)
    return resolve_config(getattr(args, "config", None)).spool_path()


def _mute_target(args: argparse.Namespace) -> tuple[str, str]:
    chosen = [(scope, value) for scope, value in
              (("run", args.run), ("project", args.project), ("channel", args.channel)) if value]
    if len(chosen) != 1:
        raise ValueError("name exactly one of: RUN (a run id or name), --project P, --channel C")
    return chosen[0]


def cmd_mute(args: argparse.Namespace) -> int:
    from sentinel.daemon.config import parse_duration
    from sentinel.formats import mutes

    try:
        scope, target = _mute_target(args)
        seconds = parse_duration(args.duration) if args.duration else None
        if seconds is not None and seconds <= 0:
            raise ValueError("--for must be longer than zero")
        spool_path = _spool_of(args)
    except ValueError as exc:
        print(f"sentinel mute: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        return _report_config_error(exc)
    if scope == "channel":
        problem = _unknown_channel(target, spool_path, getattr(args, "config", None), "sentinel mute")
        if problem:
            print(f"sentinel mute: --channel: {problem}", file=sys.stderr)
            return EXIT_USAGE
    if scope == "run" and not args.ahead and not _run_exists(spool_path, target):
        print(f"sentinel mute: no run {target!r} in {spool_path} (a mute names a run's exact id or "
              "name: see `sentinel status`; --ahead mutes a name before its run starts)", file=sys.stderr)
        return EXIT_FAILURE
    import time

    now = time.time()
    mute = mutes.Mute(scope, target, "all" if args.all else "stalls", now,
                      now + seconds if seconds is not None else None)
    try:
        mutes.write_mute(spool_path, mute)
    except OSError as exc:
        print(f"sentinel mute: cannot write to {mutes.mutes_dir(spool_path)}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    what = "every alert" if args.all else "stall alerts"
    until = f" for {args.duration}" if seconds is not None else " until `sentinel unmute`"
    print(f"muted {what} of {scope} {target!r}{until} "
          "(the daemon applies it only to runs you own, unless you are root)")
    return EXIT_OK


def _run_exists(spool_path: Path, target: str) -> bool:
    """A run with the exact id or name ``target`` is in the spool (as a mute matches)."""
    from sentinel.daemon import status

    return any(target in (run.run_id, run.name) for run in status.collect(spool_path).runs)


def _known_channels(spool_path: Path, config_arg: Optional[str]) -> tuple[Optional[list[str]], str]:
    """The channel names a run may name, and where they come from: those the
    watching daemon published, else those of the config file this user can
    read; (None, why) if neither is to be had."""
    from sentinel.formats import daemon_file

    published = daemon_file.published_channels(spool_path)
    if published is not None:
        return published, f"the daemon watching {spool_path}"
    try:
        path = find_config(config_arg)
        config = default_config() if path is None else load_config(path)
    except ConfigError as exc:
        return None, (f"no daemon publishes its channels in {spool_path} and the config is not "
                      f"readable ({exc.problems[0]})")
    return list(config.channels), "the built-in default config" if path is None else str(path)


def _unknown_channel(name: str, spool_path: Path, config_arg: Optional[str], who: str) -> Optional[str]:
    """The problem with channel ``name`` (None: known, or not checkable: then a warning is printed)."""
    from sentinel.common.rules import unknown_choice

    known, source = _known_channels(spool_path, config_arg)
    if known is None:
        print(f"{who}: warning: channel {name!r} not checked: {source}", file=sys.stderr)
        return None
    return None if name in known else f"{unknown_choice(name, known, 'channel')} (channels of {source})"


def cmd_unmute(args: argparse.Namespace) -> int:
    from sentinel.formats import mutes

    try:
        scope, target = _mute_target(args)
        spool_path = _spool_of(args)
    except ValueError as exc:
        print(f"sentinel unmute: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        return _report_config_error(exc)
    removed = mutes.remove_mutes(spool_path, scope, target)
    if not removed:
        print(f"sentinel unmute: no mute of {scope} {target!r} of yours", file=sys.stderr)
        return EXIT_FAILURE
    print(f"unmuted {scope} {target!r}")
    return EXIT_OK


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from sentinel import __version__

    parser = argparse.ArgumentParser(
        prog="sentinel",
        description="Know within seconds that a training run finished, crashed, hung or was killed.",
        epilog="Exit codes: 0 ok, 1 failure, 2 usage, 78 configuration error. "
        "Config search: --config, $SENTINEL_CONFIG, /etc/sentinel/config.yaml, "
        "$XDG_CONFIG_HOME/sentinel/config.yaml, else the embedded default (alerts on the console).",
    )
    parser.add_argument("--version", action="version", version=f"run-sentinel {__version__}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("daemon", help="watch the spool and send alerts (foreground; for systemd)",
                       description="Watch every run in the spool and deliver alerts. Runs in the foreground "
                       "and logs to stderr (journald-friendly under systemd).")
    p.add_argument("--config", metavar="PATH", help="config file (default: the config search)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   help="override the config's log_level")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="text (default; journald priorities under systemd) or one JSON object a line")
    p.set_defaults(func=cmd_daemon)

    p = sub.add_parser("status", help="list the runs in the spool and their state",
                       description="Every run in the spool: run id, name, pid, state, "
                       "last heartbeat age, step.")
    p.add_argument("run", nargs="?", metavar="RUN",
                   help="one run (id, id prefix or name) in detail: labels, channels, error, metrics, alerts")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--all", action="store_true",
                   help="also list ended runs the daemon archived (when its state directory is readable)")
    p.add_argument("--config", metavar="PATH", help="config file that names the spool")
    p.add_argument("--spool", metavar="DIR",
                   help="spool directory (default: from the config, else the spool rule)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("check-config", help="validate a config file and show what it configures",
                       description="Validate a config file, reporting every problem with its key path "
                       "and line.")
    p.add_argument("path", nargs="?", metavar="PATH", help="config file (default: the config search)")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("test", help="send a test alert through a channel",
                       description="Send a test alert through the real delivery path and print the answer.")
    p.add_argument("channel", nargs="?", metavar="CHANNEL",
                   help="channel name (default: every configured channel)")
    p.add_argument("--config", metavar="PATH", help="config file (default: the config search)")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("history", help="past alerts and what became of each delivery",
                       description="Past alerts from the daemon's journal: when, which run, what "
                       "happened, and per channel delivered / retrying (next try) / dead-lettered.")
    p.add_argument("run", nargs="?", metavar="RUN", help="only this run (id or name)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--resend", metavar="ID", help="send a dead-lettered alert once more (its ALERT ID)")
    p.add_argument("--config", metavar="PATH", help="config file that names the state directory")
    p.add_argument("--spool", metavar="DIR", help="spool directory (its .daemon state directory)")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("completion", help="print a shell completion script",
                       description='Print a completion script: eval "$(sentinel completion bash)" '
                       "in ~/.bashrc, or zsh in ~/.zshrc.")
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(func=cmd_completion)

    # What completion offers: run ids and names, channel names (not for people: not in --help's list).
    p = sub.add_parser("_names")
    p.add_argument("what", choices=("runs", "channels"))
    p.set_defaults(func=cmd_names)

    for name, func, help_text in (
        ("mute", cmd_mute, "silence stall alerts (or all) of a run, a project or a channel"),
        ("unmute", cmd_unmute, "remove a mute"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ". "
                           "Durable across daemon restarts; the daemon applies a mute only to runs "
                           "of its owner (root: every run).")
        p.add_argument("run", nargs="?", metavar="RUN", help="a run id or run name")
        p.add_argument("--project", metavar="P", help="every run of this project")
        p.add_argument("--channel", metavar="C", help="this configured channel")
        if name == "mute":
            p.add_argument("--for", dest="duration", metavar="DURATION",
                           help="how long, e.g. 30m, 2h (default: until unmuted)")
            p.add_argument("--all", action="store_true", help="every alert, not only stalls")
            p.add_argument("--ahead", action="store_true",
                           help="RUN has not started yet: mute its name ahead (else a RUN not in the "
                           "spool is an error)")
        p.add_argument("--config", metavar="PATH", help="config file that names the spool")
        p.add_argument("--spool", metavar="DIR", help="spool directory")
        p.set_defaults(func=func)

    p = sub.add_parser("run", help="run any command as a watched job",
                       usage="sentinel run [-h] [--name NAME] [--channel CHANNEL] [--project PROJECT] "
                       "[--label KEY=VALUE] [--stall-timeout DURATION] -- CMD [ARG ...]",
                       description="Run CMD as a watched child: its exit code or signal is recorded "
                       "(finished, crashed, terminated), SIGINT/SIGTERM are forwarded to it, "
                       "and sentinel exits with the child's status (128+N when killed by signal N). "
                       "The child is killed if the wrapper dies (kill -9 of sentinel run).")
    p.add_argument("--name", help="run name shown in alerts (default: the command)")
    p.add_argument("--channel", action="append", metavar="CHANNEL",
                   help="configured channel to alert (repeatable; default: the daemon's default channels)")
    p.add_argument("--project", help="project label shown in alerts")
    p.add_argument("--label", action="append", metavar="KEY=VALUE", help="a label for the run (repeatable)")
    p.add_argument("--stall-timeout", metavar="DURATION",
                   help="alert when the wrapper shows no sign of life this long (e.g. 90s, 10m, 2h; "
                   "default: the daemon's stall_timeout)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="the command and its arguments")
    p.set_defaults(func=cmd_run, parser=p)
    return parser


EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a writer killed by SIGPIPE


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)  # --help writes too
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `sentinel status | head`: the reader has gone, so has the rest of our
        # output. Point stdout at /dev/null so the exit-time flush is quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
