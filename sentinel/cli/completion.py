"""Shell completion for the ``sentinel`` command, generated from its parser.

    eval "$(sentinel completion bash)"      # ~/.bashrc
    eval "$(sentinel completion zsh)"       # ~/.zshrc (uses bashcompinit)

The scripts complete subcommands and each subcommand's options; they are
built from the argparse parser, so a new option completes without edits here.
A RUN completes to the spool's run ids and names, a channel (``--channel``,
``sentinel test``) to the names the watching daemon publishes, else those of
the config file: ``sentinel _names runs|channels`` prints them.

``compgen -W`` expands every word it is given (``$(...)`` runs), and any
local user may name a run: only names of plain characters are offered.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

SHELLS = ("bash", "zsh")
RUN_ARGUMENT_COMMANDS = ("status", "history", "mute", "unmute")
_PLAIN = re.compile(r"^[A-Za-z0-9_.:@+,=-]{1,128}$")  # nothing a shell would expand


def runs_to_offer(spool_path: Path) -> list[str]:
    """The spool's run ids and run names, those safe to hand to ``compgen -W``."""
    from sentinel.daemon import status

    words: dict[str, None] = {}
    for run in status.collect(spool_path).runs:
        for word in (run.run_id, run.name):
            if _PLAIN.match(word or ""):
                words[word] = None
    return list(words)


def commands(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Subcommand -> its option strings (long forms first)."""
    out: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name.startswith("_"):
                    continue  # for the script itself
                options = [opt for a in sub._actions for opt in a.option_strings]
                out[name] = sorted(options, key=lambda o: (not o.startswith("--"), o))
    return out


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    table = commands(parser)
    cases = "\n".join(f'        {name}) opts="{" ".join(opts)}" ;;' for name, opts in table.items())
    top = " ".join(["--help", "--version", *table])
    bash = f'''_sentinel_complete() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" cmd="" opts="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in -*) ;; *) cmd="${{COMP_WORDS[i]}}"; break ;; esac
    done
    if [[ -z "$cmd" ]]; then
        COMPREPLY=($(compgen -W "{top}" -- "$cur"))
        return
    fi
    case "$cmd" in
{cases}
    esac
    if [[ "$prev" == "--channel" || ( "$cmd" == "test" && "$cur" != -* ) ]]; then
        COMPREPLY=($(compgen -W "$(sentinel _names channels 2>/dev/null)" -- "$cur"))
    elif [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ " {" ".join(RUN_ARGUMENT_COMMANDS)} " == *" $cmd "* && "$prev" != -* ]]; then
        COMPREPLY=($(compgen -W "$(sentinel _names runs 2>/dev/null)" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -F _sentinel_complete sentinel
'''
    if shell == "bash":
        return bash
    return "autoload -U +X bashcompinit && bashcompinit\n" + bash
