"""Which channels a run may use: the admin's rules, judged on the verified uid.

A run's record is written by whoever started it; in a shared spool that is
any local user, and the daemon (often root) acts on it. So:

* a configured channel with ``users``/``groups`` is open only to runs whose
  files belong to one of those users or to a member of those groups;
* an inline channel (options a run brings along) is judged by the
  ``inline_channels`` rules in force (``Config.inline_policy``: off in a
  shared spool unless the admin allows them): its type, the host names it
  would connect to, and at most ``max_per_run`` of them per run.

A refused entry is replaced by the default channels and reported once
(``sentinel.channels.routing.resolve``): the run is watched all the same.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

from sentinel.channels import channel_class, routing
from sentinel.daemon.config import ANY_HOST, Config, InlineChannelPolicy
from sentinel.host.accounts import account_name, group_names


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """``host`` matches one of ``patterns``: a name, ``*.example.com``
    (subdomains only), or ``*`` (any host). Case and a final dot do not count."""
    host = host.lower().rstrip(".")
    if not host:
        return False
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern in (ANY_HOST, host):
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


def inline_refusal(policy: InlineChannelPolicy, options: Mapping[str, Any]) -> Optional[str]:
    """Why ``policy`` refuses an inline channel with ``options`` (None: allowed).
    The reason names the type or a host, never an option's value."""
    if not policy.allow:
        return "inline channels are not allowed here (config inline_channels.allow)"
    type_name = options.get("type")
    if not isinstance(type_name, str):
        return None  # no type: invalid, the channel's own checks say why
    if policy.types is not None and type_name not in policy.types:
        return f"type {type_name!r} is not allowed (config inline_channels.types)"
    if ANY_HOST in policy.hosts:
        return None
    try:
        cls = channel_class(type_name)
        if cls.check_options({k: v for k, v in options.items() if k != "type"}):
            return None  # invalid: reported as such when it is built
        hosts = cls.destination_hosts(options)
    except ValueError:
        return None  # an unknown type: reported as invalid when it is built
    if hosts is None:
        return f"a {type_name} channel cannot say where it sends (config inline_channels.hosts)"
    for host in hosts:
        if not host_allowed(host, sorted(policy.hosts)):
            return f"host {host!r} is not allowed (config inline_channels.hosts)"
    return None


class ChannelAccess:
    """Resolves a run's channels under the config's access rules."""

    def __init__(self, config: Config, shared_spool: bool,
                 register_inline: Optional[Callable[[Mapping[str, Any]], str]]) -> None:
        self.config = config
        self.policy = config.inline_policy(shared_spool)
        self._register_inline = register_inline

    def resolve(self, entries: Optional[Sequence[Any]], owner_uid: int,
                report: Callable[[str], object]) -> list[str]:
        """The channel names for a run owned by ``owner_uid`` that names ``entries``."""
        register = self._gated_register if self._register_inline is not None else None
        return routing.resolve(entries, self.config.channels, self.config.default_channels, register, report,
                               may_use=lambda name: self.refusal(name, owner_uid),
                               max_inline=self.policy.max_per_run if self.policy.allow else None)

    def refusal(self, name: str, uid: int) -> Optional[str]:
        """Why the owner of ``uid`` may not use configured channel ``name`` (None: they may)."""
        channel = self.config.channels.get(name)
        if channel is None or not channel.restricted:
            return None
        user = account_name(uid)
        if user is not None and channel.users is not None and user in channel.users:
            return None
        if channel.groups is not None and group_names(uid) & channel.groups:
            return None
        who = f"user {user}" if user is not None else f"uid {uid}"
        return f"not open to {who} (config channels.{name}.users/groups)"

    def _gated_register(self, options: Mapping[str, Any]) -> str:
        assert self._register_inline is not None
        reason = inline_refusal(self.policy, options)
        if reason is not None:
            raise routing.Refused(reason)
        return self._register_inline(options)
