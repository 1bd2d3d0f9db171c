"""Shell completion for `ptblm`, generated from its argparse parser (`ptblm completion bash|zsh`).

The script completes the commands, each command's flags, the choices of flags that have them (--executor,
--model, ...), cluster profiles after --cluster, experiments (jobs/*.yaml, and `all`) where a command takes
them, and file names elsewhere. zsh runs the same function through its bash-completion layer (bashcompinit).
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

SHELLS = ("bash", "zsh")
EXPERIMENT_ARGUMENTS = ("experiments", "experiment")  # positionals that name jobs files
SUGGESTIONS = "suggestions"  # an action's values to complete where argparse has no choices (RunConfig checks them)


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (subparsers,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(subparsers.choices)


def _words(words) -> str:
    return " ".join(shlex.quote(str(word)) for word in words)


def bash_script(parser: argparse.ArgumentParser, prog: str = "ptblm") -> str:
    """A bash completion function for `prog` with every command, flag and choice of `parser`."""
    commands = _commands(parser)
    top_flags = [flag for action in parser._actions for flag in action.option_strings]
    flag_cases, value_cases, positional_cases, experiment_commands = [], [], [], []
    for name, command in commands.items():
        flags = [flag for action in command._actions for flag in action.option_strings]
        flag_cases.append(f"        {name}) flags={shlex.quote(' '.join(flags))} ;;")
        for action in command._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            pattern = "|".join(f"{shlex.quote(name)}' '{flag}" for flag in action.option_strings)
            choices = action.choices or getattr(action, SUGGESTIONS, None)
            if choices:
                value_cases.append(f"        {pattern}) COMPREPLY=($(compgen -W {shlex.quote(_words(choices))}"
                                   f' -- "$cur")); return ;;')
            elif action.dest == "cluster":
                value_cases.append(f'        {pattern}) COMPREPLY=($(compgen -W "$(_{prog}_stems '
                                   f'"${{PTBLM_CLUSTERS:-slurm/clusters}}")" -- "$cur")); return ;;')
            elif action.type is Path or getattr(action.type, "completes_paths", False):  # cli.types.path_flag
                value_cases.append(f'        {pattern}) COMPREPLY=($(compgen -f -- "$cur")); return ;;')
            else:
                value_cases.append(f"        {pattern}) return ;;  # a value to type")
        for action in command._actions:
            if action.option_strings:
                continue
            if action.dest in EXPERIMENT_ARGUMENTS:
                experiment_commands.append(name)
            elif action.choices:
                positional_cases.append(f"        {name}) COMPREPLY=($(compgen -W {shlex.quote(_words(action.choices))}"
                                        f' -- "$cur")) ;;')
    function = f"_{prog}"
    return f"""# bash completion for {prog}, generated from its argument parser by `{prog} completion bash`.
# Use it with:  eval "$(.venv/bin/{prog} completion bash)"   (or put that line in ~/.bashrc)
{function}_stems() {{  # the names of the YAML files in folder $1 (jobs, cluster profiles)
    local path
    for path in "$1"/*.yaml; do
        path=${{path##*/}}
        [[ $path != "*.yaml" && $path != defaults.yaml ]] && printf '%s\\n' "${{path%.yaml}}"
    done
}}

{function}() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} command=${{COMP_WORDS[1]}} flags
    COMPREPLY=()
    if (( COMP_CWORD == 1 )); then
        COMPREPLY=($(compgen -W {shlex.quote(_words([*commands, *top_flags]))} -- "$cur"))
        return
    fi
    case "$command $prev" in
{chr(10).join(value_cases)}
    esac
    case $command in
{chr(10).join(flag_cases)}
        *) return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    elif [[ " {' '.join(experiment_commands)} " == *" $command "* ]]; then
        COMPREPLY=($(compgen -W "all $({function}_stems "${{PTBLM_JOBS:-jobs}}")" -- "$cur"))
    else
        case $command in
{chr(10).join(positional_cases)}
        esac
    fi
}}
complete -o default -F {function} {prog}
"""


def completion_script(shell: str, parser: argparse.ArgumentParser, prog: str = "ptblm") -> str:
    """The completion script for `shell` (bash, or zsh through its bash-completion layer)."""
    script = bash_script(parser, prog)
    if shell == "zsh":
        return ("# zsh completion for ptblm, through zsh's bash-completion layer. Use it with:\n"
                "#   eval \"$(.venv/bin/ptblm completion zsh)\"   (or put that line in ~/.zshrc)\n"
                "(( $+functions[compdef] )) || { autoload -U +X compinit && compinit; }\n"
                "autoload -U +X bashcompinit && bashcompinit\n" + script)
    return script
