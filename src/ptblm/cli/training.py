"""`ptblm train`, `data`, `synthetic` and `bench`: one training run, the corpora it reads, and its step times."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

from ..completion import SUGGESTIONS
from ..config import CHOICES, MODELS, PRECISIONS, RunConfig
from ..corpora import CORPORA, DEFAULT_CORPUS
from .flags import CORPUS_VARIABLES, EachOnce, add_override_flag, default_folder_text, default_results_dir
from .types import count, decimal_int, finite_float, path_flag, positive, seed

# The scaffold's run_exp.py defaults for the flags a setting must have (the course passes them all).
SCAFFOLD_DEFAULTS = {"model": "GRU", "optimizer": "SGD_LR_SCHEDULE", "initial_lr": 20.0, "batch_size": 20,
                     "hidden_size": 200, "num_layers": 2, "dp_keep_prob": 0.35, "num_epochs": 40}
FLAG_HELP = {
    "model": f"{', '.join(MODELS[:-1])} or {MODELS[-1]}", "optimizer": "SGD, SGD_LR_SCHEDULE or ADAM",
    "hidden_size": "hidden units (n_units for the TRANSFORMER)", "num_layers": "layers (blocks for the TRANSFORMER)",
    "dp_keep_prob": "dropout keep probability",
    "corpus": f"the corpus to train on: {', '.join(CORPORA)} (its files: --data, else {CORPUS_VARIABLES}, else "
              f"data/<corpus>)",
    "save_best": "also write best_params.pt, the raw state_dict (best.pt is written anyway)",
    "evaluate": "also report test perplexity of the best weights",
    "debug": "the scaffold's: one epoch, a tiny TRANSFORMER (16 units, 2 blocks), every step logged",
    "log_steps": "log the loss of every step",
    "max_batches": "cap batches per epoch (0 = whole split)", "impl": "fast (default) or reference (plain loops)",
    "attention": "scratch (default) or fused (scaled_dot_product_attention)",
    "precision": "fp32 (strict, default), tf32 (TF32 matmuls on CUDA), bf16 (autocast: A100, H100) or fp16 "
                 "(autocast with loss scaling: V100, RTX 8000, T4); see the README's precision table",
    "device": "auto, cpu or cuda",
    "cuda_graph": "auto (capture each step in a CUDA graph on CUDA), on or off",
    "compile": "off, model (the whole model under torch.compile) or cell (only a recurrent model's time step); "
               "cached in <results>/.compile-cache",
    "deterministic": "torch.use_deterministic_algorithms (and CUBLAS_WORKSPACE_CONFIG=:4096:8): bit-equal "
                     "reruns, slower; an operation without a deterministic version stops the run",
}


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, spelled as in the scaffold (--initial_lr, --save_best, ...)."""
    for field in dataclasses.fields(RunConfig):
        flag = f"--{field.name}"
        default = SCAFFOLD_DEFAULTS.get(field.name, field.default)
        if field.type == "bool":
            parser.add_argument(flag, action="store_true", help=FLAG_HELP.get(field.name))
        else:
            kind = {"int": decimal_int, "float": finite_float, "str": str}[field.type]
            action = parser.add_argument(flag, type=kind, default=default,
                                         help=f"{FLAG_HELP.get(field.name, '')} (default {default})".strip())
            setattr(action, SUGGESTIONS, CHOICES.get(field.name))  # for shell completion; RunConfig checks them


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    if args.dry_run:
        values.update(num_epochs=1, max_batches=2)
    config = RunConfig.from_dict(values, where="command line")
    config.check_keys_read("command line")
    return config


def cmd_train(args: argparse.Namespace) -> int:
    from .. import corpora
    from ..layout import manual_run_dir
    from ..run_inputs import run_inputs
    from ..stopping import StopRequest, ended_run_exit_status, stop_on_signals
    from ..train import train_run

    config = config_from_args(args)
    with tempfile.TemporaryDirectory(prefix="ptblm-dry-run-") as scratch:
        inputs = run_inputs(corpora.get(config.corpus), args.data, default_results_dir(), os.environ,
                            synthetic_dir=Path(scratch) / "data" if args.dry_run else None)
        if args.out:
            out, flag = args.out, "--out"
        elif args.save_dir:  # run_exp.py's: the parent of the run folder
            out, flag = args.save_dir / config.run_name(), "--save_dir"
        else:
            out, flag = (Path(scratch) / "run" if args.dry_run
                         else manual_run_dir(default_results_dir(), config.run_name())), "--out"
        # SIGTERM, SIGHUP (a closed terminal) and Ctrl-C end the run `cancelled` after the current batch
        with stop_on_signals(StopRequest()) as stop:
            status = train_run(config, inputs.data_dir, out, force=args.force, command_line=sys.argv,
                               should_stop=stop.is_set, environ=os.environ, out_flag=flag, **inputs.train_kwargs())
    return ended_run_exit_status(status.state, stop)


def add_train(commands) -> None:
    train = commands.add_parser("train", help="train one setting into a run folder (resumes; the scaffold's flags)")
    add_setting_flags(train)
    train.add_argument("--data", type=path_flag, default=None,
                       help="the corpus's folder, e.g. with ptb.{train,valid,test}"
                       f".txt (default: its variable, {CORPUS_VARIABLES}, else data/<corpus>; SLURM_TMPDIR: "
                       "the copy in $SLURM_TMPDIR, as in run_exp.py)")
    train.add_argument("--out", type=path_flag, default=None, help="run folder (default results/manual/<run name>)")
    train.add_argument("--save_dir", type=path_flag, default=None,
                       help="run_exp.py's: the folder to put the run folder <save_dir>/<run name> in (--out names "
                            "the run folder itself)")
    train.add_argument("--force", action="store_true", help="start over even if the run folder is finished")
    train.add_argument("--dry-run", action="store_true", help="one epoch of two batches in a temporary folder "
                       "(synthetic data when the corpus is not configured)")
    train.set_defaults(handler=cmd_train)


def cmd_data(args: argparse.Namespace) -> int:
    from .. import corpora
    from ..data import download_corpus
    from ..layout import output_dir

    corpus = corpora.get(args.corpus)
    dest = output_dir(args.dest or corpora.default_data_dir(corpus), "--dest")
    for path in download_corpus(corpus, dest):
        print(f"{path}: ok (checksums verified)")
    print(f"use it with: export {corpus.env_var}={Path(dest).resolve()}")
    return 0


def add_data(commands) -> None:
    data = commands.add_parser("data", help="download a corpus (PTB unless --corpus) and verify its checksums")
    data.add_argument("--corpus", choices=tuple(CORPORA), default=DEFAULT_CORPUS,
                      help=f"which corpus (default {DEFAULT_CORPUS})")
    data.add_argument("--dest", type=path_flag, default=None, help="folder to put its three files in (default "
                      "data/<corpus>)")
    data.set_defaults(handler=cmd_data)


def cmd_synthetic(args: argparse.Namespace) -> int:
    from .. import corpora
    from ..data import write_synthetic_corpus
    from ..layout import output_dir

    dest = output_dir(args.dest, "its DEST argument")
    print(f"wrote {write_synthetic_corpus(dest, seed=args.seed, corpus=corpora.get(args.corpus))}")
    return 0


def add_synthetic(commands) -> None:
    synthetic = commands.add_parser("synthetic", help="write a small seeded corpus in PTB's format (offline demos, "
                                    "tests)")
    synthetic.add_argument("dest", type=path_flag, help="folder to write the corpus's three files into")
    synthetic.add_argument("--seed", type=seed, default=0, help="seeds the generated text (default 0)")
    synthetic.add_argument("--corpus", choices=tuple(CORPORA), default=DEFAULT_CORPUS,
                           help=f"whose file names to write (default {DEFAULT_CORPUS})")
    synthetic.set_defaults(handler=cmd_synthetic)


def cmd_bench(args: argparse.Namespace) -> int:
    from .. import corpora
    from ..bench.cases import SUITE
    from ..bench.command import bench_command
    from ..compiling import compile_cache_dir
    from ..config import ConfigError
    from ..jobs import parse_overrides
    from ..layout import bench_dir, output_dir

    out = output_dir(args.out or bench_dir(default_results_dir()), "--out")
    experiments = None if args.full is None else tuple(args.full) or SUITE
    if args.set and experiments is None:
        raise ConfigError(f"bench: --set {' '.join(args.set)} changes the settings of experiments, but no --full "
                          f"names any; valid: --full [EXP ...] --set KEY=VALUE")
    bench_command(experiments, args.only, args.device, args.jobs, out,
                  args.precision, args.warmup, args.steps,
                  compile_cache=compile_cache_dir(default_results_dir(), os.environ) if args.compile else None,
                  runs_per_gpu=args.runs_per_gpu, corpus=corpora.get(args.corpus) if args.corpus else None,
                  overrides=parse_overrides(args.set), environ=os.environ, command_line=sys.argv)
    return 0


def add_bench(commands) -> None:
    bench = commands.add_parser("bench", help="time one training step per model and shape: this project's path, "
                                "its reference loops and PyTorch's built-in (JSON into results/bench)")
    bench.add_argument("--full", nargs="*", action=EachOnce, default=None, metavar="EXP",
                       help="the shapes of these experiments' settings (alone: the course suite's 11 shapes, "
                            "3.1-3.4), each on its setting's corpus; the dry run's cost estimate reads them "
                            "(default: 3 small ones)")
    add_override_flag(bench)
    bench.add_argument("--only", nargs="+", action=EachOnce, default=None, metavar="NAME",
                       help="cases whose name contains NAME, e.g. --full --only gru-h512-l2")
    bench.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto (CUDA when torch sees it; default), cpu or cuda")
    bench.add_argument("--corpus", choices=tuple(CORPORA), default=None,
                       help=f"time every case at this corpus's vocabulary and project its epochs, for the cost "
                            f"estimate of its settings (default: each setting's corpus; {DEFAULT_CORPUS} for "
                            f"the small cases)")
    bench.add_argument("--precision", choices=PRECISIONS, default="fp32",
                       help=f"{FLAG_HELP['precision']}; as ptblm train")
    bench.add_argument("--compile", action="store_true", help="also time the compiled paths (whole model; a "
                       "recurrent model's time step), compile time apart (cached in <results>/.compile-cache)")
    bench.add_argument("--runs-per-gpu", type=positive, default=1, metavar="K",
                       help="also time K processes at once on the device, as a profile's runs_per_gpu packs runs")
    bench.add_argument("--steps", type=positive, default=None,
                       help="timed steps per path (default 50 on GPU, 10 on CPU)")
    bench.add_argument("--warmup", type=count, default=None,
                       help="untimed steps first, graph capture included (default 5 on GPU, 2 on CPU)")
    bench.add_argument("--jobs", type=path_flag, default=default_folder_text("jobs"),
                       help="experiments folder for --full (default jobs/)")
    bench.add_argument("--out", type=path_flag, default=None,
                       help="folder for bench-<time>.json (default results/bench)")
    bench.set_defaults(handler=cmd_bench)
