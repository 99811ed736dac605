"""Daemon configuration: the model, the embedded default, and loading.

``load_config(path)`` reads YAML, substitutes ``${ENV_VAR}`` in strings and
validates everything before it returns: every problem is collected and
reported at once as ``key.path (line N): message`` (a typo must never
silently switch alerting off, so unknown keys are errors too).

The file format (see config.example.yaml for a commented example)::

    spool: /var/lib/sentinel/spool        # optional; default: the shared spool rule
    state_dir: /var/lib/sentinel/state    # optional; default: $STATE_DIRECTORY/state, else <spool>/.daemon
    language: en                          # en | zh
    stall_timeout: 10m                    # a number of seconds or "30s", "10m", "2h", "7d"
    alert_on: [finished, crashed, ...]    # states that alert
    channel_modules: [/etc/sentinel/mychannel.py]  # your own channel types (see README)
    channels:                             # named destinations
      phone: {type: bark, key: "${BARK_KEY}"}
    default_channels: [phone]             # default: every configured channel
    retention: 7d
    dead_letter_retention: 30d
    retry_for: 48h
    rescan_interval: 30s
    log_level: info
    trend_metric: loss                    # optional; default: the first scalar a run logs
    trend_points: 20                      # values in an alert's sparkline, 2-48
    inline_channels:                      # channels a run brings in its record (see README)
      allow: false                        # default: false in a shared spool, true in a private one
      hosts: [api.day.app, "*.slack.com"] # destination hosts an inline channel may name ("*": any)
      types: [bark, slack]                # default: every type
      max_per_run: 4
    message_limits:                       # run.send() / send_msg messages
      per_run_per_minute: 30
      per_user_per_minute: 120
      max_pending_per_user: 200
    budgets:                              # what one local user can make the daemon hold or do
      runs_per_user: 200                  # runs tracked at once; more wait until some end
      pidfds_per_user: 600                # process and thread pidfds of one user's runs
      state_alerts_per_user_per_minute: 30  # beyond: journaled, not sent (logged once a minute)
      refused_runs_remembered: 10000      # refused records remembered (memory stays bounded)
      open_files: 0                       # RLIMIT_NOFILE at start (0: raise the soft limit to the hard)
      http_connections: 64                # metrics/status server, at once
      http_connections_per_peer: 8
    host: gpu-box-3                       # fleet keys: see sentinel.fleet.keys
    metrics: {listen: "127.0.0.1:9464"}
    healthchecks: {api_key: "${HC_API_KEY}"}
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import ipaddress
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from sentinel.common import sparkline
from sentinel.common.rules import LANGUAGES, absolute_path, choice, positive_duration
from sentinel.common.rules import channel_name as check_channel_name
from sentinel.common.rules import kind as _kind
from sentinel.common.rules import parse_duration as parse_duration  # part of this module's API
from sentinel.fleet.keys import FLEET_KEYS, HealthchecksConfig, MetricsConfig, check_fleet, default_host
from sentinel.formats.spool import DAEMON_STATE_DIR, spool_dir
from sentinel.host.accounts import group_exists, user_exists
from sentinel.model.alerts import ALERT_STATES

log = logging.getLogger("sentinel.config")

# Set by systemd for a unit with StateDirectory= (systemd/sentinel.service).
ENV_STATE_DIRECTORY = "STATE_DIRECTORY"
LOG_LEVELS = ("debug", "info", "warning", "error")
# Option names whose literal value in a file makes the file hold a secret.
_SECRET_KEY_RE = re.compile(r"key|secret|token|webhook|password", re.IGNORECASE)
_ENV_RE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class ChannelConfig:
    name: str
    type: str
    options: dict[str, Any]  # validated, ${VAR}s substituted; includes secrets; all but `type`
    language: str = "en"
    # Who may name this channel in a run (None: anyone); judged on the run's verified uid.
    users: Optional[frozenset[str]] = None
    groups: Optional[frozenset[str]] = None

    @property
    def restricted(self) -> bool:
        return self.users is not None or self.groups is not None


ANY_HOST = "*"


@dataclass(frozen=True)
class InlineChannelPolicy:
    """What a run may bring in its record as inline channels (config ``inline_channels``)."""

    allow: bool = False
    hosts: frozenset[str] = frozenset()  # destination host names; "*.example.com" for subdomains; "*": any
    types: Optional[frozenset[str]] = None  # None: every channel type
    max_per_run: int = 4


# In a private spool only the daemon's own user writes runs: inline channels are theirs to use.
PRIVATE_SPOOL_INLINE = InlineChannelPolicy(allow=True, hosts=frozenset({ANY_HOST}))
SHARED_SPOOL_INLINE = InlineChannelPolicy()


@dataclass(frozen=True)
class MessageLimits:
    """How many ``run.send()`` messages are taken (config ``message_limits``);
    excess ones are dropped, counted and logged once per run."""

    per_run_per_minute: int = 30
    per_user_per_minute: int = 120
    max_pending_per_user: int = 200  # undelivered messages of one user at once


@dataclass(frozen=True)
class Budgets:
    """What one local user can make the daemon hold or do (config ``budgets``);
    a user over budget has their excess refused or deferred, never another's."""

    runs_per_user: int = 200  # tracked at once; the next ones are admitted as these end
    pidfds_per_user: int = 600  # process + thread pidfds of one user's watched runs
    state_alerts_per_user_per_minute: int = 30  # more are journaled but not sent
    refused_runs_remembered: int = 10_000  # refused run ids kept (oldest forgotten)
    open_files: int = 0  # RLIMIT_NOFILE asked for at start; 0: the hard limit
    http_connections: int = 64  # the metrics / status server's connections at once
    http_connections_per_peer: int = 8


@dataclass
class Config:
    spool: Optional[Path] = None  # None: the shared rule (sentinel.formats.spool.spool_dir)
    state_dir: Optional[Path] = None  # None: $STATE_DIRECTORY/state (systemd), else <spool>/.daemon
    language: str = "en"
    stall_timeout: float = 600.0
    alert_on: frozenset[str] = frozenset(ALERT_STATES)
    channel_modules: list[Path] = field(default_factory=list)  # loaded: their channel types are known
    channels: dict[str, ChannelConfig] = field(
        default_factory=lambda: {"console": ChannelConfig("console", "console", {})}
    )
    default_channels: list[str] = field(default_factory=lambda: ["console"])
    retention: float = 7 * 86400.0  # ended runs and delivered alerts are kept this long
    dead_letter_retention: float = 30 * 86400.0
    retry_for: float = 48 * 3600.0  # transient failures are retried at least this long
    rescan_interval: float = 30.0  # full spool rescan, the safety net under inotify
    log_level: str = "info"
    trend_metric: Optional[str] = None  # None: the first scalar each run logs
    trend_points: int = sparkline.DEFAULT_POINTS
    # None: not configured, the spool decides (``inline_policy``).
    inline_channels: Optional[InlineChannelPolicy] = None
    message_limits: MessageLimits = field(default_factory=MessageLimits)
    budgets: Budgets = field(default_factory=Budgets)
    # Fleets (sentinel.fleet.keys): the name reported as, metrics, healthchecks.io.
    host: str = field(default_factory=default_host)
    metrics: Optional[MetricsConfig] = None
    healthchecks: Optional[HealthchecksConfig] = None
    source: Optional[Path] = None  # the file it came from, for messages

    def inline_policy(self, shared_spool: bool) -> InlineChannelPolicy:
        """The inline channel rules in force: the configured ones, else off in
        a shared spool (any user could aim the daemon at any address) and
        unrestricted but capped in a private one."""
        if self.inline_channels is not None:
            return self.inline_channels
        return SHARED_SPOOL_INLINE if shared_spool else PRIVATE_SPOOL_INLINE

    def spool_path(self) -> Path:
        return self.spool if self.spool is not None else spool_dir()

    def state_path(self) -> Path:
        if self.state_dir is not None:
            return self.state_dir
        # systemd may list several directories, colon-separated; the unit names one.
        from_systemd = os.environ.get(ENV_STATE_DIRECTORY, "").split(":")[0]
        return Path(from_systemd) / "state" if from_systemd else self.legacy_state_path()

    def legacy_state_path(self) -> Path:
        """Where the state is kept without a state_dir: inside the spool."""
        return self.spool_path() / DAEMON_STATE_DIR


# ---------------------------------------------------------------- the config search

SYSTEM_CONFIG = Path("/etc/sentinel/config.yaml")
ENV_CONFIG = "SENTINEL_CONFIG"


def find_config(explicit: Optional[str] = None, env: Optional[Mapping[str, str]] = None) -> Optional[Path]:
    """The config file to use, or None for the embedded default.

    ``--config``, then ``$SENTINEL_CONFIG`` (both must exist), then
    /etc/sentinel/config.yaml, then $XDG_CONFIG_HOME/sentinel/config.yaml.
    """
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    config_home = env.get("XDG_CONFIG_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".config"
    )
    for candidate in (SYSTEM_CONFIG, Path(config_home) / "sentinel" / "config.yaml"):
        if candidate.exists():
            return candidate
    return None


def resolve_config(explicit: Optional[str] = None) -> Config:
    """Load the config the search finds (ConfigError if it is unusable)."""
    path = find_config(explicit)
    if path is None:
        return default_config()
    return load_config(path)


def default_config() -> Config:
    """The embedded default: the default spool, alerts printed to the console."""
    return Config()


# ---------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    path: str  # "channels.phone.key", "" for the whole file
    line: Optional[int]  # 1-based
    message: str

    def __str__(self) -> str:
        where = self.path or "(file)"
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` lists every reason at once."""

    def __init__(self, source: Union[str, Path, None], problems: list[Problem]) -> None:
        self.source = source
        self.details = list(problems)
        self.problems = [str(p) for p in problems]
        head = f"{source}: " if source else ""
        count = len(self.problems)
        super().__init__(
            f"{head}{count} problem{'s' if count != 1 else ''} in the configuration:\n"
            + "\n".join(f"  {p}" for p in self.problems)
        )


# ---------------------------------------------------------------- loading


Key = tuple  # a key path: strings (mapping keys) and ints (list indexes)


def format_path(path: Key) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load_config(path: Union[str, Path], env: Optional[Mapping[str, str]] = None) -> Config:
    """Read and validate the config file at ``path``; raise ConfigError listing
    every problem. ``env`` (default os.environ) supplies ``${VAR}`` values."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(path, [Problem("", None, f"cannot read the file: {reason}")]) from None
    config = parse_config(text, source=path, env=env)
    _warn_if_exposed(path, text, config)
    return config


def parse_config(
    text: str, source: Union[str, Path, None] = None, env: Optional[Mapping[str, str]] = None
) -> Config:
    """Validate YAML ``text`` into a Config (``load_config`` without the file)."""
    import yaml  # the daemon side only: `import sentinel` stays stdlib

    env = os.environ if env is None else env
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [Problem("", line, f"not valid YAML: {reason}")]) from None
    validator = _Validator(env)
    data = validator.plain(root, ()) if root is not None else {}
    config = validator.build(data, root)
    if validator.problems:
        raise ConfigError(source, sorted(validator.problems, key=lambda p: (p.line or 0, p.path)))
    config.source = Path(source) if source is not None else None
    return config


def channel_secrets(config: Config) -> list[str]:
    """Secret values held by the configured channels (for redaction and the
    file permission check)."""
    registry = _channel_registry()
    found: list[str] = []
    for chan in config.channels.values():
        cls = registry.get(chan.type)
        if cls is not None:
            # A channel that cannot even be built says nothing here.
            with contextlib.suppress(Exception):
                found.extend(s for s in cls(chan.name, chan.options, chan.language).secrets() if s)
        found.extend(
            v for k, v in chan.options.items() if _SECRET_KEY_RE.search(str(k)) and isinstance(v, str) and v
        )
    if config.healthchecks is not None:
        found.append(config.healthchecks.api_key)
    return sorted(set(found))


def _warn_if_exposed(path: Path, text: str, config: Config) -> None:
    """A config whose text holds a secret must not be readable by others."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return
    # Secrets that came from ${ENV_VAR} are not in the text, so they do not count.
    if any(len(s) >= 4 and s in text for s in channel_secrets(config)):
        log.warning(
            "%s holds channel secrets and is readable by %s (mode %03o); run: chmod 600 %s",
            path,
            "group and others" if mode & stat.S_IROTH and mode & stat.S_IRGRP
            else ("others" if mode & stat.S_IROTH else "group"),
            stat.S_IMODE(mode),
            path,
        )


def _channel_registry() -> Mapping[str, Any]:
    from sentinel.channels import REGISTRY  # lazily: `import sentinel` in training never loads the channels

    return REGISTRY


class _Validator:
    """Walks the composed YAML once, collecting every problem with its line."""

    def __init__(self, env: Mapping[str, str]) -> None:
        import yaml

        self.env = env
        self.problems: list[Problem] = []
        self.lines: dict[Key, int] = {}
        self.constructor = yaml.constructor.SafeConstructor()
        self.declared_channels: Optional[list[str]] = None  # names under `channels`, valid or not
        self.unresolved: set[Key] = set()  # values with an unset ${VAR}: reported once, not judged again

    # -- helpers

    def problem(self, path: Key, message: str, line: Optional[int] = None) -> None:
        probe = tuple(path) if line is None else ()
        while probe:  # the nearest enclosing key that has a line
            if probe in self.lines:
                line = self.lines[probe]
                break
            probe = probe[:-1]
        if line is None:
            line = self.lines.get(())
        self.problems.append(Problem(format_path(path), line, message))

    def plain(self, node: Any, path: Key) -> Any:
        """Python values from a composed node, recording each key's line,
        rejecting duplicate keys and substituting ${VAR} in strings."""
        import yaml

        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.lines.setdefault(path, key_node.start_mark.line + 1)
                    self.problem(path, "keys must be plain names")
                    continue
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.problem(path, "YAML merge keys (<<) are not supported")
                    continue
                key = key_node.value
                child = path + (key,)
                if key in out:
                    self.problem(child, "duplicate key (YAML would silently keep only one value)",
                                 line=key_node.start_mark.line + 1)
                    continue
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self.plain(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[path + (index,)] = item.start_mark.line + 1
                items.append(self.plain(item, path + (index,)))
            return items
        try:
            value = self.constructor.construct_object(node)  # a scalar, typed by YAML's rules
        except yaml.YAMLError as exc:
            self.problem(path, f"invalid value: {exc}")
            return None
        if isinstance(value, str):
            value = self.substitute(value, path)
        return value

    def substitute(self, text: str, path: Key) -> str:
        def replace(match: re.Match) -> str:
            if match.group(0) == "$${":
                return "${"  # escaped: a literal "${"
            name = match.group(1)
            if not _ENV_NAME_RE.match(name):
                self.problem(path, f"${{{name}}} is not a valid environment variable reference")
                return ""
            if name not in self.env:
                self.problem(path, f"environment variable {name} is not set")
                self.unresolved.add(tuple(path))
                return ""
            return self.env[name]

        return _ENV_RE.sub(replace, text)

    def check_keys(self, data: Mapping[str, Any], path: Key, allowed: tuple) -> None:
        for key in data:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                known = f" (known keys: {', '.join(allowed)})"
                hint_text = f"; did you mean {hint[0]!r}?" if hint else known
                self.problem(path + (key,), "unknown key" + hint_text)

    def mapping(self, value: Any, path: Key) -> Optional[dict]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping of keys to values, not {_kind(value)}")
            return None
        return value

    def take(self, data: Mapping[str, Any], key: str, path: Key, convert: Callable[[Any], Any]) -> Any:
        """``convert(data[key])``, or a problem at ``path.key`` if it raises."""
        try:
            return convert(data[key])
        except (ValueError, TypeError) as exc:
            self.problem(path + (key,), str(exc))
            return None

    # -- the schema

    def build(self, data: Any, root: Any) -> Config:
        config = Config()
        data = self.mapping(data, ())
        if data is None:
            return config
        top = (
            "spool", "state_dir", "language", "stall_timeout", "alert_on", "channel_modules", "channels",
            "default_channels", "retention", "dead_letter_retention", "retry_for",
            "rescan_interval", "log_level", "trend_metric", "trend_points", "inline_channels",
            "message_limits", "budgets", *FLEET_KEYS,
        )
        self.check_keys(data, (), top)
        if "channel_modules" in data:  # first: the channels below may use their types
            config.channel_modules = self.channel_modules(data["channel_modules"], ("channel_modules",))

        for key in ("spool", "state_dir"):
            if key in data:
                setattr(config, key, self.take(data, key, (), absolute_path))
        if "language" in data:
            config.language = self.take(data, "language", (), choice(LANGUAGES)) or config.language
        if "log_level" in data:
            level = self.take(data, "log_level", (), choice(LOG_LEVELS))
            config.log_level = level or config.log_level
        for key in ("stall_timeout", "retention", "dead_letter_retention", "retry_for", "rescan_interval"):
            if key in data:
                seconds = self.take(data, key, (), positive_duration)
                if seconds is not None:
                    setattr(config, key, seconds)
        if "trend_metric" in data:
            config.trend_metric = self.take(data, "trend_metric", (), _metric_name)
        if "trend_points" in data:
            points = self.take(data, "trend_points", (), _trend_points)
            config.trend_points = points if points is not None else config.trend_points
        if "alert_on" in data:
            states = self.states(data["alert_on"], ("alert_on",))
            if states is not None:
                config.alert_on = frozenset(states)
        if "channels" in data:
            channels = self.channels(data["channels"], ("channels",), config.language)
            if channels is not None:
                config.channels = channels
                config.default_channels = list(channels)
        if "default_channels" in data:
            declared = self.declared_channels if "channels" in data else list(config.channels)
            if declared is not None:  # else `channels` itself is wrong, already reported
                names = self.default_channels(data["default_channels"], declared, "channels" in data)
                if names is not None:
                    config.default_channels = names
        if "inline_channels" in data:
            config.inline_channels = self.inline_channels(data["inline_channels"], ("inline_channels",))
        if "message_limits" in data:
            config.message_limits = self.message_limits(data["message_limits"], ("message_limits",))
        if "budgets" in data:
            config.budgets = self.budgets(data["budgets"], ("budgets",))
        check_fleet(self, data, config)
        for chan in config.channels.values():
            if chan.type == "alertmanager":  # its alerts name this daemon's host by default
                chan.options.setdefault("host", config.host)
        return config

    def inline_channels(self, value: Any, path: Key) -> Optional[InlineChannelPolicy]:
        block = self.mapping(value, path)
        if block is None:
            return None
        self.check_keys(block, path, ("allow", "hosts", "types", "max_per_run"))
        defaults = InlineChannelPolicy()
        allow = block.get("allow", defaults.allow)
        if not isinstance(allow, bool):
            self.problem(path + ("allow",), f"must be true or false, not {_kind(allow)}")
            allow = False
        hosts = self.names(block.get("hosts", []), path + ("hosts",), "host names", _check_host)
        types = None
        if "types" in block:
            known = tuple(sorted(_channel_registry()))
            types = self.names(block["types"], path + ("types",), "channel types",
                               lambda item: _check_choice(item, known, "channel type"))
        max_per_run = self.count(block, "max_per_run", path, defaults.max_per_run)
        if allow and "hosts" not in block:
            self.problem(path + ("hosts",), "required when allow is true: the host names inline channels "
                                            f"may send to ({ANY_HOST!r} for any host: not on a shared host)")
        return InlineChannelPolicy(allow=allow, hosts=frozenset(hosts), max_per_run=max_per_run,
                                   types=frozenset(types) if types is not None else None)

    def message_limits(self, value: Any, path: Key) -> MessageLimits:
        block = self.mapping(value, path)
        defaults = MessageLimits()
        if block is None:
            return defaults
        keys = ("per_run_per_minute", "per_user_per_minute", "max_pending_per_user")
        self.check_keys(block, path, keys)
        return MessageLimits(**{key: self.count(block, key, path, getattr(defaults, key)) for key in keys})

    def budgets(self, value: Any, path: Key) -> Budgets:
        block = self.mapping(value, path)
        defaults = Budgets()
        if block is None:
            return defaults
        keys = tuple(f.name for f in dataclasses.fields(Budgets))
        self.check_keys(block, path, keys)
        values = {key: self.count(block, key, path, getattr(defaults, key)) for key in keys}
        for key in keys:  # 0 would refuse everything (open_files: 0 means "the hard limit")
            if key != "open_files" and key in block and values[key] == 0 and block[key] == 0:
                self.problem(path + (key,), "must be at least 1")
                values[key] = getattr(defaults, key)
        return Budgets(**values)

    def count(self, block: Mapping[str, Any], key: str, path: Key, default: int) -> int:
        if key not in block:
            return default
        value = block[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            shown = repr(value) if isinstance(value, int) and not isinstance(value, bool) else _kind(value)
            self.problem(path + (key,), f"must be a whole number (0 or more), not {shown}")
            return default
        return value

    def names(self, value: Any, path: Key, what: str, check: Callable[[Any], Optional[str]]) -> list[str]:
        """A list of strings, each judged by ``check`` (a problem text, or None)."""
        if not isinstance(value, list):
            self.problem(path, f"must be a list of {what}, not {_kind(value)}")
            return []
        out: list[str] = []
        for index, item in enumerate(value):
            problem = check(item)
            if problem is not None:
                if path + (index,) not in self.unresolved:
                    self.problem(path + (index,), problem)
            elif item not in out:
                out.append(item)
        return out

    def states(self, value: Any, path: Key) -> Optional[list[str]]:
        if not isinstance(value, list):
            self.problem(path, f"must be a list of states ({', '.join(ALERT_STATES)}), not {_kind(value)}")
            return None
        states, ok = [], True
        for index, item in enumerate(value):
            if item not in ALERT_STATES:
                states_list = ", ".join(ALERT_STATES)
                self.problem(path + (index,), f"unknown state {item!r}; states are: {states_list}")
                ok = False
            else:
                states.append(item)
        return states if ok else None

    def channel_modules(self, value: Any, path: Key) -> list[Path]:
        if not isinstance(value, list):
            self.problem(path, f"must be a list of paths to Python files, not {_kind(value)}")
            return []
        registry = _channel_registry()
        loaded: list[Path] = []
        for index, item in enumerate(value):
            try:
                module_path = absolute_path(item)
            except ValueError as exc:
                self.problem(path + (index,), str(exc))
                continue
            try:
                if registry is None:
                    raise ValueError("channels cannot be loaded here")
                from sentinel.channels import load_channel_module

                load_channel_module(module_path)
            except Exception as exc:  # whatever the module raised: reported, never a crash
                message = str(exc) if isinstance(exc, ValueError) else f"{exc.__class__.__name__}: {exc}"
                self.problem(path + (index,), f"cannot load: {message}")
            else:
                loaded.append(module_path)
        return loaded

    def channels(self, value: Any, path: Key, language: str) -> Optional[dict[str, ChannelConfig]]:

        value = self.mapping(value, path)
        if value is None:
            return None
        self.declared_channels = [str(name) for name in value]
        registry = _channel_registry()
        known_types = tuple(sorted(registry))
        out: dict[str, ChannelConfig] = {}
        for name, block in value.items():
            where = path + (name,)
            try:
                check_channel_name(name)
            except ValueError as exc:
                self.problem(where, str(exc))
                continue
            if not isinstance(block, dict):
                self.problem(where, f"must be a mapping with at least a 'type', not {_kind(block)}")
                continue
            kind = block.get("type")
            if "type" not in block:
                self.problem(where, f"missing 'type' (one of: {', '.join(known_types)})")
                continue
            if kind not in known_types:
                types_list = ", ".join(known_types)
                self.problem(where + ("type",), f"unknown channel type {kind!r}; types are: {types_list}")
                continue
            cls = registry.get(kind)
            chan_language = language
            if "language" in block:
                if cls is None:  # else the channel's check_options judges it with the rest
                    chan_language = self.take(block, "language", where, choice(LANGUAGES)) or language
                elif block["language"] in LANGUAGES:
                    chan_language = block["language"]
            users = groups = None
            if "users" in block:
                users = frozenset(self.names(block["users"], where + ("users",), "user names", _check_user))
            if "groups" in block:
                groups = frozenset(self.names(block["groups"], where + ("groups",), "group names",
                                              _check_group))
            # `language` stays among the options: a channel's own language outranks a run's.
            options = {k: v for k, v in block.items() if k not in ("type", "users", "groups")}
            if cls is not None:
                try:
                    issues = list(cls.check_options(options))
                except Exception as exc:  # a broken option value must not crash validation
                    issues = [("", f"invalid options ({exc.__class__.__name__}: {exc})")]
                for key, message in issues:  # key may be dotted: "level.killed"
                    at = where + (tuple(str(key).split(".")) if key else ())
                    if at not in self.unresolved:
                        self.problem(at, message)
            out[name] = ChannelConfig(name, kind, options, chan_language, users=users, groups=groups)
        return out

    def default_channels(self, value: Any, channels: list[str], explicit: bool) -> Optional[list]:
        path: Key = ("default_channels",)
        if not isinstance(value, list):
            self.problem(path, f"must be a list of channel names, not {_kind(value)}")
            return None
        names, ok = [], True
        for index, item in enumerate(value):
            if not isinstance(item, str) or item not in channels:
                defined = ", ".join(channels) or "none"
                origin = "defined under channels" if explicit else "defined (only the built-in 'console')"
                self.problem(path + (index,), f"{item!r} is not a channel {origin}; channels: {defined}")
                ok = False
            elif item not in names:
                names.append(item)
        return names if ok else None


def _metric_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 128:
        raise ValueError(f"must be the name of a logged scalar (up to 128 characters), not {_kind(value)}")
    return value


def _trend_points(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= sparkline.MAX_POINTS:
        raise ValueError(f"must be a whole number from 2 to {sparkline.MAX_POINTS}, not {value!r}")
    return value


def _check_choice(value: Any, known: tuple[str, ...], what: str) -> Optional[str]:
    if isinstance(value, str) and value in known:
        return None
    hint = difflib.get_close_matches(str(value), known, n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(known)})"
    return f"unknown {what} {value!r}{suggestion}"


_HOST_RE = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9\-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9\-]{0,62}))*$")


def _check_host(value: Any) -> Optional[str]:
    if value == ANY_HOST:
        return None
    if not isinstance(value, str):
        return f"must be a host name, not {_kind(value)}"
    if not (_HOST_RE.match(value) or _is_ip_literal(value)):
        return f"must be a host name like api.day.app or *.slack.com (no scheme, port, path), not {value!r}"
    return None


def _is_ip_literal(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def _check_user(value: Any) -> Optional[str]:
    if not isinstance(value, str) or not value:
        return f"must be a user name, not {_kind(value)}"
    return None if user_exists(value) else f"no user {value!r} on this host"


def _check_group(value: Any) -> Optional[str]:
    if not isinstance(value, str) or not value:
        return f"must be a group name, not {_kind(value)}"
    return None if group_exists(value) else f"no group {value!r} on this host"

