"""A training stand-in using real SwanLab (offline mode) with a sentinel callback.

    python tests/victims/swanlab_victim.py MODE [options] [--dropin KIND --dropin-args JSON]...

Works with every SwanLab the adapter supports (>= 0.8, 0.6.12-0.7.x,
<= 0.6.11 with swankit). ``--dropin bark|dingtalk|slack|lark|wecom|wxwork|discord|telegram|email``
uses the drop-in notification callback built from ``--dropin-args`` (JSON:
an object of keyword arguments, or a list of positional ones)
instead of a plain SentinelCallback (repeat the pair for several drop-ins;
with ``--channel`` a SentinelCallback joins them, still one run), and
``--send`` goes through the first one's ``send_msg``. ``swanlab.finish()`` is the explicit finish.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402


def main() -> None:
    argv = sys.argv[1:]
    dropins: list[tuple[str, object]] = []  # (kind, arguments), in order
    also_plain = False
    while "--dropin" in argv:
        i = argv.index("--dropin")
        kind = argv[i + 1]
        del argv[i : i + 2]
        arguments: object = {}
        if "--dropin-args" in argv:
            j = argv.index("--dropin-args")
            arguments = json.loads(argv[j + 1])
            del argv[j : j + 2]
        dropins.append((kind, arguments))
    probe_api_key = "--probe-api-key" in argv  # prove the key reached callbacks' settings
    if probe_api_key:
        argv.remove("--probe-api-key")
    if "--also-plain" in argv:  # a SentinelCallback next to the drop-in: still one run
        argv.remove("--also-plain")
        also_plain = True
    args = _common.parse_args(argv)
    _common.install_user_sigterm(args)

    import swanlab

    import sentinel

    options = dict(name=args.name, channels=args.channels, stall_timeout=args.stall_timeout,
                   heartbeat_interval=args.heartbeat)
    callbacks = []
    if dropins:
        classes = {"bark": sentinel.BarkCallback, "dingtalk": sentinel.DingTalkCallback,
                   "slack": sentinel.SlackCallback, "lark": sentinel.LarkCallback,
                   "wecom": sentinel.WeComCallback, "wxwork": sentinel.WXWorkCallback,
                   "discord": sentinel.DiscordCallback,
                   "telegram": sentinel.TelegramCallback, "email": sentinel.EmailCallback}
        for kind, arguments in dropins:
            cls = classes[kind]
            if isinstance(arguments, list):  # positional, as a script written for SwanLab passes them
                callbacks.append(cls(*arguments, heartbeat_interval=args.heartbeat))
            else:
                callbacks.append(cls(**arguments, heartbeat_interval=args.heartbeat))  # type: ignore[arg-type]
        callback = callbacks[0]
        send = callback.send_msg
        if also_plain or args.channels:  # inline channels too: a SentinelCallback beside the drop-ins
            callbacks.append(sentinel.SentinelCallback(**options))
    else:
        callback = sentinel.SentinelCallback(**options)
        callbacks.append(callback)

        def send(text: str) -> None:  # a plain SentinelCallback has no send_msg
            callback.recorder.send(text)

    if probe_api_key and isinstance(getattr(swanlab, "Callback", None), type):
        callbacks.append(_api_key_probe(swanlab.Callback)())
    swanlab.init(project="victim-project", experiment_name=f"exp-{args.mode}",
                 description="a victim run", mode="offline", callbacks=callbacks)
    _common.say(f"READY {callback.run_id}")

    def report(step: int) -> None:
        swanlab.log({"loss": 1.0 / step, "acc": step / 100.0}, step=step)

    _common.act(args, report, send, swanlab.finish)


def _api_key_probe(base: type) -> type:
    class ApiKeyProbe(base):  # type: ignore[misc, valid-type]
        @property
        def name(self) -> str:
            return "api-key-probe"

        def on_run_initialized(self, run_dir, path, settings=None, *args, **kwargs):  # noqa: ANN001
            seen = bool(getattr(settings, "api_key", None)) and settings.api_key == os.environ.get(
                "SWANLAB_API_KEY")
            _common.say(f"API_KEY_SEEN {'yes' if seen else 'no'}")

    return ApiKeyProbe


if __name__ == "__main__":
    main()
