"""The command line: the scaffold's flags verbatim, dry runs, and one clear error line per mistake."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from ptblm import runfolder as rf
from ptblm.config import MODELS


def ptblm(*args: str, cwd=REPO, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptblm.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("model", MODELS)
def test_dry_run_smoke_path_for_every_model(model, tmp_path):
    heads = ["--n_heads=4"] if model == "TRANSFORMER" else []  # the recurrent models read no n_heads (refused)
    result = ptblm("train", f"--model={model}", "--hidden_size=32", *heads, "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "epoch 1/1" in result.stdout and "finished: done" in result.stdout
    assert not (tmp_path / "results").exists()  # a dry run leaves nothing behind


def test_a_dry_run_on_synthetic_text_says_so(tmp_path):
    """Without data, a dry run trains on a synthetic stand-in in PTB's file names: its log says it is no PTB."""
    env = {key: value for key, value in os.environ.items() if key != "PTB_DIR"}
    result = ptblm("train", "--model=GRU", "--hidden_size=8", "--emb_size=8", "--dry-run", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert ": Penn Treebank, synthetic text in its files' names (ptblm synthetic), not the published files (" in first


def test_course_command_line_runs_verbatim(tmp_path, synthetic_dir):
    out = tmp_path / "run"
    result = ptblm("train", "--model=GRU", "--optimizer=SGD_LR_SCHEDULE", "--initial_lr=10", "--batch_size=8",
                   "--seq_len=12", "--hidden_size=16", "--num_layers=2", "--dp_keep_prob=0.35", "--num_epochs=1",
                   "--emb_size=8", "--seed=1111", "--save_best", "--evaluate", "--debug",
                   "--data", str(synthetic_dir), "--out", str(out))
    assert result.returncode == 0, result.stderr
    run = rf.read_run(out)
    assert run.config["optimizer"] == "SGD_LR_SCHEDULE" and run.config["save_best"] and run.config["debug"]
    assert run.curves.test_ppl is not None
    assert "train step 2/" in result.stdout  # --debug logs every step


@pytest.mark.parametrize("args, message", [
    (["train", "--model=TCN"],
     f"ptblm train: error: command line: model = 'TCN' is invalid; valid: one of {', '.join(MODELS)}"),
    (["train", "--batch_size=many"], "ptblm train: error: argument --batch_size: 'many' is not a decimal integer; "
                                     "valid: digits without a leading zero, e.g. 32"),
    (["train", "--hidden_size=1_000"], "ptblm train: error: argument --hidden_size: '1_000' is not a decimal integer"),
    (["train", "--initial_lr=1:30.5"], "ptblm train: error: argument --initial_lr: '1:30.5' is not a decimal number; "
                                       "valid: e.g. 0.7 or 1e-3"),
    (["train", "--dp_keep_prob=1.5"],
     "ptblm train: error: command line: dp_keep_prob = 1.5 is invalid; valid: a keep probability in (0, 1]"),
    (["train", "--bogus"], "ptblm: error: unrecognized arguments: --bogus"),
    (["train", "--seed=1180591620717411303424"],
     "ptblm train: error: command line: seed = 1180591620717411303424 is invalid; valid: an integer from 0 to "),
    (["train", "--initial_lr=1e400"], "ptblm train: error: argument --initial_lr: '1e400' is not a finite number"),
    (["train", "--initial_lr=-1"],
     "ptblm train: error: command line: initial_lr = -1.0 is invalid; valid: a finite number > 0"),
    (["train", "--data", "/nonexistent"], "ptblm train: error: /nonexistent/ptb.train.txt is missing: run `make data`"),
    (["train", "--dry-run", "--device=cpu", "--cuda_graph=on"],
     "ptblm train: error: cuda_graph = 'on' needs a CUDA device, but this run is on cpu (device 'cpu', torch sees "),
    (["submit", "3.9"], "ptblm submit: error: no experiment '3.9': jobs/3.9.yaml does not exist"),
    (["submit", "smoke", "--only", ",", "--dry-run"], "ptblm submit: error: argument --only: ',' has an empty "
     "setting; valid: setting numbers or run names separated by commas, e.g. 0,2 or 0-3"),
    (["sbatch", "smoke", "--only", "", "--dry-run"], "ptblm sbatch: error: argument --only: '' has an empty setting"),
    (["status", "--results", "~nosuchuser/x"], "ptblm status: error: argument --results: ~nosuchuser/x: ~nosuchuser "
     "names no user of this machine (so no home folder to put in its place); valid: ~/..., ~<existing user>/..., or "
     "a path without ~"),
    (["export", "--results", "/nonexistent"], "ptblm export: error: no run folders under /nonexistent (expected "),
    (["submit", "3.1", "--cluster", "nowhere", "--dry-run"], "ptblm submit: error: no cluster profile 'nowhere'"),
    (["submit", "3.2", "--set", "num_epochs=forty", "--dry-run"],
     "ptblm submit: error: --set num_epochs=forty: num_epochs = 'forty' has type str; expected int"),
    (["sbatch", "3.2", "--set", "dp_keep_prob=2", "--dry-run"],
     "ptblm sbatch: error: jobs/3.2.yaml with --set dp_keep_prob=2, setting 0: dp_keep_prob = 2.0 is invalid; valid: "
     "a keep probability in (0, 1]"),
])
def test_mistakes_give_one_clear_error_line(tmp_path, args, message):
    """Exit 2 for a usage error (argparse's), 1 for a UserError: both one line."""
    result = ptblm(*args, cwd=REPO)
    assert result.returncode == (2 if message.startswith("ptblm: error:") or "argument --" in message else 1)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_corrupt_data_is_one_line_naming_the_file(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.{split}.txt").write_text(" a b c \n")
    (tmp_path / "ptb.train.txt").write_bytes(b"\xff\xfe\x00 not text")
    result = ptblm("train", "--data", str(tmp_path), "--out", str(tmp_path / "run"))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"ptblm train: error: {tmp_path}/ptb.train.txt is not UTF-8 text (byte 0): "
                                     f"corrupt, or not a Penn Treebank file")
    assert not (tmp_path / "run").exists()  # read before any run folder is made, as submit reads it first


def parsed_config(*args: str):
    from ptblm.cli import build_parser, config_from_args

    return config_from_args(build_parser().parse_args(["train", *args]))


def test_run_exp_defaults_and_debug_while_the_jobs_files_keep_20_epochs():
    from ptblm.jobs import load_experiment

    assert parsed_config().num_epochs == 40  # run_exp.py's default
    assert {s.config.num_epochs for exp in ("3.1", "3.2", "3.3", "3.4")
            for s in load_experiment(exp, REPO / "jobs").settings} == {20}
    tiny = parsed_config("--model=TRANSFORMER", "--hidden_size=512", "--num_layers=6", "--debug")
    assert (tiny.num_epochs, tiny.hidden_size, tiny.num_layers, tiny.dp_keep_prob, tiny.n_heads, tiny.log_steps) == (
        1, 16, 2, 0.9, 16, True)  # run_exp.py: TRANSFORMER(vocab_size, n_units=16, n_blocks=2), one epoch
    gru = parsed_config("--model=GRU", "--hidden_size=64", "--debug")
    assert (gru.num_epochs, gru.hidden_size, gru.log_steps) == (1, 64, True)  # the RNNs keep their size there
    steps = parsed_config("--log_steps")
    assert (steps.num_epochs, steps.debug, steps.log_steps) == (40, False, True)


def test_save_dir_data_slurm_tmpdir_and_save_best(tmp_path, synthetic_dir):
    import os
    import shutil

    import torch

    from ptblm.models import GRU

    node = tmp_path / "node"
    shutil.copytree(synthetic_dir, node)
    args = ["train", "--model=GRU", "--optimizer=ADAM", "--initial_lr=0.01", "--batch_size=8", "--seq_len=12",
            "--hidden_size=16", "--emb_size=8", "--num_epochs=1", "--max_batches=2", "--save_best",
            "--data", "SLURM_TMPDIR", "--save_dir", str(tmp_path / "saved")]
    result = ptblm(*args, env={**os.environ, "SLURM_TMPDIR": str(node)})
    assert result.returncode == 0, result.stderr
    (folder,) = (tmp_path / "saved").iterdir()
    run = rf.read_run(folder)
    assert folder.name == run.provenance["run_name"] and run.provenance["data_dir"] == str(node)
    assert not (node / "ptblm-data").exists()  # read where it lies: no second copy
    state_dict = torch.load(folder / "best_params.pt", weights_only=True)  # run_exp.py's raw state_dict
    model = GRU(8, 16, 12, 8, run.provenance["vocab_size"], 2, 0.35)
    model.load_state_dict(state_dict)
    best = torch.load(folder / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(state_dict[k], best[k]) for k in best)

    unset = {k: v for k, v in os.environ.items() if k != "SLURM_TMPDIR"}
    result = ptblm(*args, env=unset)
    assert result.returncode == 1
    assert result.stderr.strip() == ("ptblm train: error: --data SLURM_TMPDIR: $SLURM_TMPDIR is not set "
                                     "(Slurm sets it inside a job); pass the Penn Treebank folder instead")


def test_several_experiments_print_one_plan_each_and_set_reaches_every_one(tmp_path, study_sized_dir):
    result = ptblm("submit", "3.1", "3.2", "--set", "num_epochs=3", "--dry-run", "--executor", "local",
                   "--data", str(study_sized_dir), "--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert [line.split(" (")[0] for line in result.stdout.splitlines() if line.startswith("experiment ")] == [
        "experiment 3.1", "experiment 3.2"]
    assert result.stdout.count("dry run: nothing submitted") == 2
    assert result.stdout.count("_ep3 ") == 2 * (5 + 3) and not (tmp_path / "3.1").exists()  # plan and cost rows
    every = ptblm("sbatch", "all", "--dry-run", "--data", str(study_sized_dir), "--results", str(tmp_path))
    assert every.returncode == 0, every.stderr
    assert [line.split(" (")[0] for line in every.stdout.splitlines() if line.startswith("experiment ")] == [
        "experiment 3.1", "experiment 3.2", "experiment 3.3", "experiment 3.4"]


def test_a_bug_keeps_its_traceback_and_a_user_error_is_one_line_exit_1(monkeypatch, capsys):
    from ptblm import cli
    from ptblm.cli import launching  # where the status command lives
    from ptblm.errors import UserError

    def out_of_memory(args):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(launching, "cmd_status", out_of_memory)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):  # not swallowed into one line
        cli.main(["status"])

    def mistake(args):
        raise UserError("jobs/x.yaml, setting 0: seed = -1 is invalid")

    monkeypatch.setattr(launching, "cmd_status", mistake)
    assert cli.main(["status"]) == 1
    assert capsys.readouterr().err == "ptblm status: error: jobs/x.yaml, setting 0: seed = -1 is invalid\n"


@pytest.mark.parametrize("file, damage, message", [
    ("curves.json", lambda text: text.replace('"train_ppl": 1000.0', '"train_ppl": "garbage"', 1),
     "epochs[1].'train_ppl' is a string ('garbage'), expected a number"),
    ("config.json", lambda text: text.replace('"model": "RNN"', '"model": "TCN"'),
     f"model = 'TCN' is invalid; valid: one of {', '.join(MODELS)}"),
    ("config.json", lambda text: text.replace('"num_epochs": 2', '"num_epochs": "two"'),
     "num_epochs = 'two' has type str; expected int"),
    ("status.json", lambda text: "\udcff" + text, "'utf-8' codec can't decode byte 0xff in position 0"),
])
def test_a_damaged_run_folder_file_is_one_line_naming_it(tmp_path, file, damage, message):
    """Was: `invalid literal for int() with base 10: 'two'`, `could not convert string to float: 'garbage'`,
    `tuple.index(x): x not in tuple`, naming no file. Now the file, the field and its value, and the other
    runs still reported (the damage suite, test_damage.py, tries every file, damage and command)."""
    from conftest import write_run

    folder = write_run(tmp_path, "3.1", [1000.0, 500.0])
    write_run(tmp_path, "3.2", [900.0, 400.0], model="GRU")
    (folder / file).write_bytes(damage((folder / file).read_text()).encode("utf-8", "surrogateescape"))
    for command in ("tables", "figures", "export"):
        result = ptblm(command, "--results", str(tmp_path), "--out", str(tmp_path / "out"))
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        (line,) = [line for line in result.stdout.splitlines() if str(folder) in line]
        assert f"{folder / file}: " in line and message in line, line
    table = ptblm("tables", "--results", str(tmp_path), "--out", str(tmp_path / "out")).stdout
    assert [line.split("|")[2].strip() for line in table.splitlines() if "| 3." in line] == ["3.2"]  # the GRU's row


# ----------------------------------------------------------------------------- what a person expects of a command line

def every_command():
    """(name, its parser) for every command."""
    import argparse

    from ptblm.cli import build_parser

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return commands.choices.items()


def every_action():
    """(command, action) for every argument of every command, and of ptblm itself."""
    import argparse

    from ptblm.cli import build_parser

    parser = build_parser()
    yield "ptblm", [a for a in parser._actions if not isinstance(a, argparse._SubParsersAction)]
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in commands.choices.items():
        yield name, command._actions


def test_every_flag_and_argument_of_every_command_has_help():
    import argparse

    missing = [f"{name} {action.option_strings or action.dest}" for name, actions in every_action()
               for action in actions if not action.help or action.help == argparse.SUPPRESS]
    assert missing == []


def attributes_read(function, param: str) -> set[str]:
    """What `function` reads of its parameter `param` (`args.x`, `getattr(args, "x")`), with what the ptblm
    functions it passes `param` on to read of theirs; a getattr whose name is computed reads
    '<computed in FUNCTION>'."""
    import ast
    import inspect
    import textwrap

    found = set()
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(function)))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == param:
            found.add(node.attr)
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        passed = [i for i, arg in enumerate(node.args) if isinstance(arg, ast.Name) and arg.id == param]
        if node.func.id == "getattr" and passed == [0]:
            name = node.args[1]
            found.add(name.value if isinstance(name, ast.Constant) else f"<computed in {function.__name__}>")
            continue
        callee = function.__globals__.get(node.func.id)
        if passed and inspect.isfunction(callee) and callee.__module__.startswith("ptblm"):
            found |= attributes_read(callee, list(inspect.signature(callee).parameters)[passed[0]])
    return found


def test_every_flag_of_every_command_reaches_its_handler():
    """Each command's handler (or a function it hands the arguments to) reads every flag the command takes: no
    flag is accepted and ignored (tables once took --jobs and --clusters), and none read is missing."""
    import dataclasses
    import inspect

    from ptblm.config import RunConfig
    from ptblm.report.trained import analysed_runs

    computed = {"<computed in config_from_args>": {field.name for field in dataclasses.fields(RunConfig)},
                "<computed in analysed_models>": {analysed.model.lower() for analysed in analysed_runs()}}
    unread, missing = [], []
    for name, command in every_command():
        handler = command.get_default("handler")
        read = attributes_read(handler, next(iter(inspect.signature(handler).parameters)))
        read = set().union(*(computed.get(key, {key}) for key in read))
        taken = {action.dest for action in command._actions if action.dest != "help"}
        unread += [f"{name} {dest}" for dest in sorted(taken - read)]
        missing += [f"{name} {dest}" for dest in sorted(read - taken)]
    assert (unread, missing) == ([], [])


REPORT_FLAGS = {  # what each report command takes: the folders it reads and writes, and its own options
    "tables": ["-h", "--results", "--out", "experiments"],
    "figures": ["-h", "--results", "--out", "experiments"],
    "report": ["-h", "--results", "--out", "experiments", "--threshold", "--no-pdf"],
    "export": ["-h", "experiments", "--format", "--out", "--results"],
    "gradients": ["-h", "--results", "--out", "--data", "--rnn", "--gru", "--lstm", "--seed", "--hidden"],
    "samples": ["-h", "--results", "--out", "--data", "--rnn", "--gru", "--lstm", "--seed", "--temperature",
                "--top-k", "--no-unk"],
}


@pytest.mark.parametrize("command", REPORT_FLAGS)
def test_each_report_command_takes_its_flags_only(command):
    actions = dict(every_action())[command]
    assert [action.option_strings[0] if action.option_strings else action.dest for action in actions] == \
        REPORT_FLAGS[command]


def command_helps() -> dict[str, str]:
    """Each command's one-line help, as `ptblm --help` lists it."""
    import argparse

    from ptblm.cli import build_parser

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {action.dest: action.help for action in commands._choices_actions}


def test_the_analyses_help_names_the_models_they_analyse_and_generate_names_none(monkeypatch):
    from ptblm.report import trained

    helps = command_helps()
    assert helps["gradients"] == ("dL_T/dh_t against t for the RNN, the GRU and, when there is one, the LSTM "
                                  "(into results/report/gradients)")
    assert helps["samples"].startswith("sequences generated by the RNN, the GRU and, when there is one, the LSTM")
    assert not any(model in helps["generate"] for model in MODELS)  # it continues any model
    listed = (trained.AnalysedRun("GRU", "3.2", 0), trained.AnalysedRun("TRANSFORMER", "3.4", 0, required=False))
    monkeypatch.setattr(trained, "analysed_runs", lambda: listed)
    helps = command_helps()  # read from analysed_runs(), whatever it lists
    assert helps["gradients"].startswith("dL_T/dh_t against t for the GRU and, when there is one, the Transformer (")
    assert helps["samples"].startswith("sequences generated by the GRU and, when there is one, the Transformer,")


def test_version_prints_the_package_version():
    import importlib.metadata

    result = ptblm("--version")
    assert result.returncode == 0 and result.stdout == f"ptblm {importlib.metadata.version('ptblm')}\n"


@pytest.mark.parametrize("args, message", [
    (["samples", "--temperature", "nan"], "argument --temperature: 'nan' is not a temperature; valid: 0 (greedy) or "
                                          "a finite number > 0"),
    (["samples", "--temperature", "-0.5"], "argument --temperature: '-0.5' is not a temperature"),
    (["samples", "--top-k", "-1"], "argument --top-k: '-1' is not a count; valid: an integer >= 0"),
    (["gradients", "--seed", "-3"], "argument --seed: '-3' is not a seed; valid: an integer from 0 to 4294967295"),
    (["train", "--dp_keep_prob", "nan"], "argument --dp_keep_prob: 'nan' is not a finite number"),
    (["train", "--initial_lr", "inf"], "argument --initial_lr: 'inf' is not a finite number"),
    (["bench", "--steps", "0"], "argument --steps: '0' is not a positive integer; valid: 1 or more"),
])
def test_numbers_no_command_can_use_are_a_usage_error(args, message):
    result = ptblm(*args)
    assert result.returncode == 2 and result.stderr.startswith(f"ptblm {args[0]}: error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1


def test_only_submits_the_named_settings_by_number_range_or_run_name(tmp_path, study_sized_dir):
    from ptblm.jobs import load_experiment

    flags = ["--dry-run", "--executor", "local", "--data", str(study_sized_dir), "--results", str(tmp_path)]

    def planned(*only):
        result = ptblm("submit", "3.1", *only, *flags)
        assert result.returncode == 0, result.stderr
        plan = result.stdout.split("\n#")[1]  # the plan table (the cost table follows)
        return [line.split()[0] for line in plan.splitlines() if line[:1].isdigit()]

    assert planned("--only", "0,3") == ["0", "3"]
    names = [setting.run_name for setting in load_experiment("3.1", REPO / "jobs").settings]
    assert planned("--only", "1-2", "--only", names[4]) == ["1", "2", "4"]
    bad = ptblm("sbatch", "3.1", "--only", "0,9", *flags[:1], *flags[3:])
    assert bad.returncode == 1 and bad.stderr == (
        f"ptblm sbatch: error: --only 0,9: 3.1 has no setting '9'; valid: setting numbers 0 to 4 (e.g. 0,2 or 0-3) "
        f"or run names: {', '.join(names)}\n")


def completion_words(script: Path, shell: str, *words: str) -> list[str]:
    """What `script` offers after `words` (the last one being completed)."""
    call = ('COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _ptblm; printf "%s\\n" "${COMPREPLY[@]}"'
            if shell == "bash" else
            'words=("$@"); CURRENT=${#words}; COMP_WORDS=("$@"); COMP_CWORD=$(( ${#words} - 1 )); '
            'compgen -F _ptblm -- "${words[-1]}"')
    argv = ["bash", "-c", f'source {script}; {call}', "-", *words] if shell == "bash" else \
        ["zsh", "-f", "-c", f'source {script}; {call}', "-", *words]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    words_offered = done.stdout.split()
    return words_offered if shell == "bash" else [w for w in words_offered if w.startswith(words[-1])]


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script_parses_and_completes_commands_flags_choices_and_experiments(shell, tmp_path):
    import shutil

    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    result = ptblm("completion", shell)
    assert result.returncode == 0, result.stderr
    script = tmp_path / f"ptblm.{shell}"
    script.write_text(result.stdout)
    assert subprocess.run([shell, "-n", str(script)], capture_output=True).returncode == 0
    assert completion_words(script, shell, "ptblm", "su") == ["submit"]
    assert completion_words(script, shell, "ptblm", "sb") == ["sbatch"]
    assert completion_words(script, shell, "ptblm", "submit", "--exe") == ["--executor"]
    assert completion_words(script, shell, "ptblm", "submit", "--executor", "l") == ["local"]
    assert completion_words(script, shell, "ptblm", "train", "--model", "G") == ["GRU"]
    assert completion_words(script, shell, "ptblm", "sbatch", "3.") == ["3.1", "3.2", "3.3", "3.4"]
    assert completion_words(script, shell, "ptblm", "submit", "--cluster", "mi") == ["mila"]
    if shell == "bash":  # every folder or file flag completes file names
        assert "train' '--out) COMPREPLY=($(compgen -f" in result.stdout
        assert "export' '--results) COMPREPLY=($(compgen -f" in result.stdout


UNWRITABLE = Path("/sys/ptblm-cannot-write-here")  # even root cannot make a folder in sysfs


@pytest.mark.parametrize("command", ["tables", "figures", "export", "report"])
def test_an_output_folder_that_is_a_file_or_unwritable_is_one_line_naming_it_and_the_flag(tmp_path, command):
    from conftest import write_run

    write_run(tmp_path / "results", "3.1", [1000.0, 500.0])
    blocking = tmp_path / "taken"
    blocking.write_text("a file where the report should go\n")
    extra = ["--no-pdf"] if command == "report" else []
    result = ptblm(command, "--results", str(tmp_path / "results"), "--out", str(blocking / "sub"), *extra)
    assert result.returncode == 1 and result.stderr == (
        f"ptblm {command}: error: {blocking} is a file, not a folder, so {blocking / 'sub'} cannot be written: "
        f"choose a folder with --out\n")
    if not Path("/sys").is_dir():
        return
    result = ptblm(command, "--results", str(tmp_path / "results"), "--out", str(UNWRITABLE), *extra)
    assert result.returncode == 1 and result.stderr.startswith(
        f"ptblm {command}: error: {UNWRITABLE}: cannot create it (") and result.stderr.endswith(
        "): choose a writable folder with --out\n")


@pytest.mark.parametrize("command, folder", [("tables", "tables"), ("figures", "figures"), ("report", "tables")])
def test_a_file_in_the_way_of_a_report_folder_is_named_with_the_flag_that_moves_the_report(tmp_path, command, folder):
    """Each report file's folder is made where the file is written (outputs.py): a file in its place is named as
    such (it said `summary.tex: cannot write it (File exists); make the folder writable`), and a folder in the
    place of a file too."""
    from conftest import write_run
    from runtree import cli

    write_run(tmp_path / "results", "3.1", [1000.0, 500.0])
    report = tmp_path / "results" / "report"
    report.mkdir()
    (report / folder).write_text("a file where a folder of the report goes\n")
    code, output = cli(command, "--results", tmp_path / "results", *(["--no-pdf"] if command == "report" else []))
    assert code == 1 and output.endswith(f"ptblm {command}: error: {report / folder} is a file, not a folder: move it "
                                         f"away, or choose another folder with --out\n"), output
    (report / folder).unlink()
    (report / "tables" / "summary.tex").mkdir(parents=True)
    code, output = cli("tables", "--results", tmp_path / "results")
    assert code == 1 and output.endswith(f"ptblm tables: error: {report / 'tables' / 'summary.tex'} is a folder "
                                         f"where ptblm writes a file: move it away, or choose another folder with "
                                         f"--out\n"), output


def test_submit_into_a_results_folder_it_cannot_write_is_one_line_naming_results(tmp_path, synthetic_dir):
    blocking = tmp_path / "results"
    blocking.write_text("not a folder\n")
    result = ptblm("submit", "smoke", "--executor", "local", "--data", str(synthetic_dir), "--results", str(blocking))
    assert result.returncode == 1 and result.stderr == (
        f"ptblm submit: error: {blocking} is a file, not a folder, so {blocking / 'smoke'} cannot be written: "
        f"choose a folder with --results (RESULTS= for make)\n")


def test_train_and_a_scheduled_task_choose_data_scratch_and_caches_in_one_place(tmp_path, synthetic_dir):
    import os

    from ptblm.corpora import PTB
    from ptblm.run_inputs import run_inputs

    results = tmp_path / "results"
    environ = {"SLURM_TMPDIR": "/node/tmp", "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "2"}
    inputs = run_inputs(PTB, str(synthetic_dir), results, environ)
    assert (inputs.data_dir, inputs.scratch_dir, inputs.slurm_job_id) == (synthetic_dir, "/node/tmp", "7_2")
    assert (inputs.compile_cache, inputs.fingerprint_cache) == (results / ".compile-cache",
                                                                results / ".corpus-fingerprints.json")
    assert run_inputs(PTB, None, results, {"PTB_DIR": str(synthetic_dir)}).data_dir == synthetic_dir
    dry = run_inputs(PTB, None, results, {}, synthetic_dir=tmp_path / "synthetic")  # no data/ptb here: a synthetic one
    assert dry.data_dir == tmp_path / "synthetic" and (dry.data_dir / "ptb.train.txt").is_file()
    # `ptblm train` now keeps the corpus fingerprints where the submitted tasks keep them
    args = ["train", "--model=RNN", "--optimizer=ADAM", "--initial_lr=0.01", "--batch_size=8", "--seq_len=12",
            "--hidden_size=8", "--emb_size=8", "--num_epochs=1", "--max_batches=1", "--data", str(synthetic_dir),
            "--out", str(tmp_path / "run")]
    results.mkdir()
    result = ptblm(*args, env={**os.environ, "PTBLM_RESULTS": str(results)})
    assert result.returncode == 0, result.stderr
    assert (results / ".corpus-fingerprints.json").is_file()


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_a_literal_tilde_in_a_folder_is_the_home_folder_never_a_folder_named_tilde(tmp_path, how):
    """make, a quoted value or a variable pass `~` on as it is (RESULTS='~/x')."""
    from conftest import write_run

    home = tmp_path / "home"
    write_run(home / "runs", "3.1", valid=[300.0])
    env = {**os.environ, "HOME": str(home), "PTBLM_RESULTS": "~/runs" if how == "variable" else ""}
    result = ptblm("export", *(["--results", "~/runs"] if how == "flag" else []), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"exported 1 run: wrote 2 files to {home / 'runs' / 'report' / 'data'}"
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_cancelled_train_exits_128_plus_the_signal_as_every_command_does(tmp_path, synthetic_dir, signum):
    out = tmp_path / "run"
    train = subprocess.Popen([sys.executable, "-m", "ptblm.cli", "train", "--model=RNN", "--hidden_size=8",
                              "--emb_size=8", "--num_layers=1", "--batch_size=8", "--seq_len=12", "--num_epochs=500",
                              "--data", str(synthetic_dir), "--out", str(out)], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while (rf.read_status(out) is None or rf.read_status(out).state != rf.RUNNING) and time.time() < deadline:
        time.sleep(0.2)  # running: its trainer is inside stop_on_signals
    train.send_signal(signum)
    assert train.wait(timeout=120) == 128 + signum, train.stderr.read()
    assert rf.read_status(out).state == rf.CANCELLED


@pytest.mark.parametrize("lock", ["a folder", "held"])
def test_a_run_folder_that_cannot_be_locked_is_one_line_whose_hint_fits_the_command(tmp_path, synthetic_dir, lock):
    """evaluate takes no --out: the run folder's errors name no flag of another command."""
    from conftest import tiny_config
    from ptblm.train import train_run

    folder = tmp_path / "results" / "manual" / "r1"
    train_run(tiny_config(num_epochs=1, max_batches=2), synthetic_dir, folder, echo=False, environ={})
    args = ("evaluate", "manual/r1", "--results", str(tmp_path / "results"), "--data", str(synthetic_dir))
    if lock == "a folder":
        (folder / rf.LOCK_FILE).unlink()
        (folder / rf.LOCK_FILE).mkdir()
        result = ptblm(*args)  # one skip line (the other runs named would be evaluated), then exit 1
        expected = (f"skip: {folder / rf.LOCK_FILE} is a folder, not the lock file ptblm keeps "
                    f"there; remove it (`rmdir {folder / rf.LOCK_FILE}` when empty) and run again\n")
        assert result.returncode == 1 and result.stdout.startswith(expected), result.stdout
    else:  # a note, and the other runs named are evaluated
        with rf.RunFolder(folder).hold():
            result = ptblm(*args)
        assert result.returncode == 1 and f"{folder} is being written by another ptblm run (" in result.stdout
        assert result.stdout.splitlines()[0].endswith("wait for it to end or stop it"), result.stdout
    assert result.stdout.splitlines()[-1] == ("1 of the runs asked for not evaluated (see the skip lines above); "
                                              "0 evaluated")
    assert "--out" not in result.stdout + result.stderr


# Other programs' flags that ptblm's own text spells (sbatch, apptainer/podman, git, TensorBoard).
OTHER_PROGRAMS_FLAGS = {"--always", "--array", "--bind", "--cgroup-manager", "--dirty", "--entrypoint", "--env",
                        "--cpus-per-task", "--exclusive", "--export", "--from", "--gpus-per-node", "--hold", "--host",
                        "--job-name", "--load_fast", "--logdir", "--mem", "--network", "--nv", "--output",
                        "--partition", "--port", "--requeue", "--rm", "--runtime", "--tags", "--time", "--ulimit",
                        "--volume", "--workdir"}


def test_every_flag_a_message_or_hint_names_is_a_flag_of_ptblm_or_of_the_program_it_names():
    """A hint never sends a person to a flag that no ptblm command has (a renamed or imagined one)."""
    import argparse
    import ast
    import re

    from ptblm.cli import build_parser

    flags = set()

    def collect(parser):
        for action in parser._actions:
            flags.update(option for option in action.option_strings if option.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                for command in action.choices.values():
                    collect(command)

    collect(build_parser())
    named = {}
    for path in (REPO / "src" / "ptblm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", node.value):
                    named.setdefault(flag, f"{path.relative_to(REPO)}:{node.lineno}")
    unknown = {flag: where for flag, where in named.items() if flag not in flags | OTHER_PROGRAMS_FLAGS}
    assert unknown == {}


def test_every_list_a_command_takes_names_each_thing_once():
    """`ptblm export smoke smoke` read every run twice, `tensorboard smoke smoke` crashed, `evaluate smoke
    smoke/<run>` evaluated the run twice: every argument or flag that takes several values goes through one
    action (cli.flags.EachOnce, naming.each_once), which keeps each value once, in the order first named."""
    from ptblm.cli import build_parser
    from ptblm.cli.flags import EachOnce

    lists = {f"{name} {action.option_strings or action.dest}": isinstance(action, EachOnce)
             for name, actions in every_action() for action in actions if action.nargs in ("*", "+")}
    assert all(lists.values()), lists
    assert {name.split()[0] for name in lists} == {"submit", "sbatch", "status", "tables", "figures", "report",
                                                   "export", "tensorboard", "evaluate", "bench"}  # it sees them all
    parser = build_parser()
    assert parser.parse_args(["export", "b", "a", "b", "a"]).experiments == ["b", "a"]
    assert parser.parse_args(["evaluate", "3.1", "3.1/run", "3.1"]).runs == ["3.1", "3.1/run"]
    assert parser.parse_args(["submit", "all", "3.1", "all"]).experiments == ["all", "3.1"]


def test_no_message_builds_a_plural_by_hand():
    """'for 1 runs', 'exported 1 run{s}': every count in words goes through ptblm.wording.count."""
    import ast

    built = []
    for path in (REPO / "src" / "ptblm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.IfExp) and any(isinstance(branch, ast.Constant) and branch.value in ("s", "es")
                                                   for branch in (node.body, node.orelse)):
                built.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert built == []
