"""Shell completion for the ``sentinel`` command, generated from its parser.

    eval "$(sentinel completion bash)"      # ~/.bashrc
    eval "$(sentinel completion zsh)"       # ~/.zshrc (uses bashcompinit)

The scripts complete subcommands and each subcommand's options; they are
built from the argparse parser, so a new option completes without edits here.
"""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh")


def commands(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Subcommand -> its option strings (long forms first)."""
    out: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                options = [opt for a in sub._actions for opt in a.option_strings]
                out[name] = sorted(options, key=lambda o: (not o.startswith("--"), o))
    return out


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    table = commands(parser)
    cases = "\n".join(f'        {name}) opts="{" ".join(opts)}" ;;' for name, opts in table.items())
    top = " ".join(["--help", "--version", *table])
    bash = f'''_sentinel_complete() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="" opts="" i
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
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -F _sentinel_complete sentinel
'''
    if shell == "bash":
        return bash
    return "autoload -U +X bashcompinit && bashcompinit\n" + bash
