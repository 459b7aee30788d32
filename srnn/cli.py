"""The `srnn` command: train, evaluate and sample SRNNs (and the VRNN and RNN baselines, --model).

    srnn train --preset small --epochs 30         # the synthetic data, no files needed
    srnn train --dataset jsb --variant srnn2016   # the paper's setting
    srnn evaluate --run-dir runs/jsb-srnn2016-paper --iw-samples 100
    srnn sample --run-dir runs/jsb-srnn2016-paper --num 4 --length 200 --out samples
    srnn train --impl torch --device cuda ...     # torch_impl on a GPU
    torchrun --nproc-per-node 2 -m srnn.cli train --impl torch ...   # data-parallel

Any error the user can act on ends as one line `srnn: error: ...` with exit status 2;
Ctrl-C ends with one line and status 130.
"""
import argparse
import dataclasses
import os
import sys
from pathlib import Path

from ref import BACKENDS, PRESETS, Config, preset
from ref.config import INFERENCE, MODELS
from ref.errors import ConfigError, DataError, SRNNError

from . import checkpoint, ctrl_c
from .config import DTYPES, TRAIN_LAYOUTS, TrainConfig
from .data import DATA_DIR_ENV, DATASETS, VARIANTS, load_dataset
from .engine import ENGINES, EngineOptions, make_engine
from .evaluation import evaluate, format_metrics
from .loop import train
from .music import generate, piano_roll_png, write_midi
from .reproduce import describe_runs, pending_runs, reproduce
from .rundir import read_run_config, recorded_data_dir

MODEL_HELP = {
    "model": "srnn (Fraccaro et al. 2016), vrnn (Chung et al. 2015) or rnn (the SRNN without z): "
             "docs/model.md §4, §8, §7",
    "d_dim": "units of the deterministic GRU state d_t (the VRNN's h_t)",
    "z_dim": "dimensions of the stochastic state z_t",
    "a_dim": "units of the inference state a_t",
    "h_dim": "hidden units of every MLP",
    "embed_layers": "dense layers of the feature extractor of u_t and x_t",
    "mlp_layers": "hidden layers of each prior, posterior and emission MLP",
    "inference": "smoothing (backward GRU for a_t) or filtering (MLP)",
}
MODEL_FLAGS = tuple(MODEL_HELP)
TRAIN_HELP = {
    "dataset": "'synthetic' (sampled from a known teacher SRNN, no files) or a music benchmark",
    "variant": "data preprocessing: boulanger2012 (standard splits, whole pieces) or srnn2016 "
               "(the SRNN paper's, truncated-BPTT streams); ignored by synthetic",
    "train_layout": "as_stored (each variant's own train split) or streams (whole pieces concatenated into "
                    "batch-size streams of 100-step chunks, states carried: the paper's training layout)",
    "epochs": "number of epochs to train (with --resume: the new total)",
    "batch_size": "sequences per batch (srnn2016 needs 16)",
    "lr": "Adam's learning rate",
    "adam_eps": "Adam's epsilon",
    "max_grad_norm": "rescale gradients to this global norm at most",
    "clip_value": "then clip every gradient element to ±this",
    "weight_decay": "AdamW's decoupled weight decay: each step multiplies the parameters by 1 - lr·this "
                    "(0: none, the paper's training)",
    "kl_start": "KL weight at the first batch",
    "kl_anneal_epochs": "epochs over which the KL weight rises linearly to 1",
    "lr_decay_start": "the learning rate decays from epoch lr-decay-start + 1 on (epochs counted from 0)",
    "lr_decay": "divide the learning rate by this every epoch once it decays",
    "valid_every": "validate every this many epochs (and after the last)",
    "patience": "stop early once this many epochs have passed since the best validation ELBO (0: never)",
    "iw_samples": "K, paths of the importance-weighted bound on the test split",
    "seed": "seed of parameter initialisation, batch order and noise",
    "dtype": "float64 or float32",
    "backend": "--impl ref: numba (compiled kernels with hand-derived gradients) or numpy (the readable loops); "
               "both compute the same numbers",
}


class _UsageError(Exception):
    """A bad command line; argparse would print usage and exit, we print one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(message)


def main(argv=None):
    """Run the `srnn` command line; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        with ctrl_c.remembered():
            args.command(args)
            ctrl_c.check()  # one that landed after the last batch's check
        return 0
    except (SRNNError, _UsageError, OSError) as e:
        message = " ".join(str(e).split())  # one line, whatever the message holds
        print(f"srnn: error: {message}", file=sys.stderr)
        return 2
    except BaseException as e:
        interrupt = ctrl_c.caused(e)
        if interrupt is None:
            raise
        what, status = ctrl_c.ended(interrupt)
        print(f"srnn: {str(interrupt) or what}", file=sys.stderr)
        return status


def build_parser():
    parser = _Parser(prog="srnn", description="Stochastic recurrent neural networks (Fraccaro et al., NIPS 2016) "
                                               "for polyphonic music.")
    common = _Parser(add_help=False)
    common.add_argument("--impl", choices=tuple(ENGINES), default="ref",
                        help="implementation to run: ref (NumPy + autograd, numba) or torch (PyTorch) (default: ref)")
    common.add_argument("--device", help="--impl torch: cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    common.add_argument("--bf16", action="store_true",
                        help="--impl torch: forward passes under bfloat16 autocast (GPUs; needs --dtype float32)")
    commands = parser.add_subparsers(title="commands", required=True, metavar="{train,evaluate,sample,reproduce}")

    train = commands.add_parser("train", parents=[common], help="train a model (the synthetic data by default)",
                                description="Train an SRNN (or a VRNN or RNN, --model); the run directory receives checkpoints, metrics, "
                                            "a learning curve and, at the end, the test metrics.")
    train.set_defaults(command=_train)
    train.add_argument("--preset", choices=tuple(PRESETS), default="paper",
                       help="model sizes: paper (the paper's) or small (minutes on a laptop) (default: paper)")
    train.add_argument("--run-dir", type=Path,
                       help="default: runs/<dataset>-<variant>-<preset> (runs/synthetic-<preset> for synthetic; "
                            "runs/<model>-... for vrnn and rnn)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --run-dir from its last completed epoch, with its saved settings")
    sizes = train.add_argument_group("model sizes (override the preset)")
    model_fields = {f.name: f for f in dataclasses.fields(Config)}
    for name in MODEL_FLAGS:
        default = model_fields[name].default
        choices = {"inference": INFERENCE, "model": MODELS}.get(name)
        sizes.add_argument(_flag(name), type=type(default), choices=choices, metavar=None if choices else "N",
                           help=f"{MODEL_HELP[name]} (paper: {default})")
    settings = train.add_argument_group("training settings (defaults: the paper's code)")
    choices = {"dataset": ("synthetic", *DATASETS), "variant": VARIANTS, "train_layout": TRAIN_LAYOUTS,
               "dtype": DTYPES, "backend": tuple(BACKENDS)}
    for field in dataclasses.fields(TrainConfig):
        settings.add_argument(_flag(field.name), type=type(field.default), choices=choices.get(field.name),
                              help=f"{TRAIN_HELP[field.name]} (default: {field.default})")

    for name, helptext, run in (("evaluate", "ELBO and importance-weighted bound of a trained model", _evaluate),
                                ("sample", "sample piano rolls (PNG) and MIDI files from a trained model", _sample)):
        sub = commands.add_parser(name, parents=[common], help=helptext, description=helptext)
        sub.set_defaults(command=run)
        source = sub.add_mutually_exclusive_group(required=True)
        source.add_argument("--run-dir", type=Path, help="a training run directory (uses its best.npz)")
        source.add_argument("--checkpoint", type=Path, help="a checkpoint file (.npz)")
        sub.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    evaluate, sample = commands.choices["evaluate"], commands.choices["sample"]
    for sub in (train, evaluate):
        sub.add_argument("--data-dir", help="directory holding the data files (default: $SRNN_DATA_DIR, "
                                            "else a per-user cache filled by downloading them)")
    evaluate.add_argument("--split", choices=("test", "valid"), default="test", help="(default: test)")
    evaluate.add_argument("--backend", choices=tuple(BACKENDS), default="numba", help=TRAIN_HELP["backend"] + " (default: numba)")
    evaluate.add_argument("--iw-samples", type=int, help="K paths of the importance-weighted bound "
                                                         "(default: the run's iw_samples)")
    sample.add_argument("--num", type=int, default=4, help="number of samples (default: 4)")
    sample.add_argument("--length", type=int, default=200, help="time steps per sample (default: 200)")
    sample.add_argument("--out", type=Path, default=Path("samples"), help="output directory (default: samples)")
    sample.add_argument("--seconds-per-step", type=float, default=0.25,
                        help="duration of one time step in the MIDI files (default: 0.25)")
    reproduce = commands.add_parser("reproduce", parents=[common], help="a run of the results table: train, evaluate, "
                                    "write results/<name>.json", description=REPRODUCE_HELP)
    reproduce.set_defaults(command=_reproduce)
    reproduce.add_argument("name", nargs="?", help="the run, e.g. jsb-srnn2016 (see --list)")
    reproduce.add_argument("--list", action="store_true", help="list the runs and exit")
    reproduce.add_argument("--pending", action="store_true", help="with --list: only the runs whose result file in "
                                                                 "--results-dir is missing, partial or short of what "
                                                                 "the tables need (an IW bound, a validation ELBO)")
    reproduce.add_argument("--seed", type=int, help="train and evaluate the run with this seed instead of its own "
                                                    "(the result is results/<name>-seed<N>.json)")
    reproduce.add_argument("--epochs", type=int, help="stop before the run's 50 epochs (the result is marked partial)")
    reproduce.add_argument("--iw-samples", type=int, help="K of the test IW bound, instead of the run's (100; 100 and 1000 on JSB srnn2016)")
    reproduce.add_argument("--runs-dir", type=Path, default=Path("runs/paper"), help="(default: runs/paper)")
    reproduce.add_argument("--results-dir", type=Path, default=Path("results"), help="(default: results)")
    reproduce.add_argument("--data-dir", help="directory holding the data files (default: $SRNN_DATA_DIR or the cache)")
    return parser


REPRODUCE_HELP = ("Train (or resume) one run of the results table with the paper's configuration, evaluate its best "
                  "checkpoint in float64 (ELBO with both implementations, IW bound), and write results/<name>.json.")


def _reproduce(args):
    if args.pending and not args.list:
        raise ConfigError("--pending goes with --list (srnn reproduce --list --pending)")
    if args.list:
        print(describe_runs(pending_runs(args.results_dir) if args.pending else None))
        return
    if args.name is None:
        raise ConfigError("name the run to reproduce (srnn reproduce --list shows them)")
    if args.iw_samples is not None and args.iw_samples < 1:
        raise ConfigError(f"--iw-samples must be at least 1, got {args.iw_samples}")
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be an integer >= 0, got {args.seed}")
    name = args.name if args.seed is None else f"{args.name}-seed{args.seed}"
    reproduce(name, lambda config, dtype: _engine(args, config, dtype, "numba"), args.runs_dir,
              args.results_dir, args.data_dir, args.epochs, args.iw_samples, " ".join(["srnn", *sys.argv[1:]]))


def _flag(name):
    return "--" + name.replace("_", "-")


def _train(args):
    model_flags = {name: getattr(args, name) for name in MODEL_FLAGS if getattr(args, name) is not None}
    train_flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                   if getattr(args, f.name) is not None}
    tc = TrainConfig(**train_flags)
    run_dir = args.run_dir or _default_run_dir(tc, args.preset, args.model or "srnn", args.resume)
    data_dir = args.data_dir
    if args.resume:
        # the run's saved settings, with the flags given here; train() refuses any change but epochs
        config, saved_tc = read_run_config(run_dir)
        config = dataclasses.replace(config, **model_flags)
        tc = dataclasses.replace(saved_tc, **train_flags)
        data_dir = _data_dir(args.data_dir, run_dir)
    else:
        config = preset(args.preset, **model_flags)
    train(run_dir, config, tc, data_dir, args.resume, _engine(args, config, tc.dtype, tc.backend))


def _default_run_dir(tc, preset_name, model, resume):
    """runs/<dataset>-<variant>-<preset> (runs/<model>-... for a baseline), numbered -2, -3, ... when it already holds a run, so that
    the same command can be run twice; with --resume, the newest of them."""
    data = tc.dataset if tc.dataset == "synthetic" else f"{tc.dataset}-{tc.variant}"
    base = Path("runs") / (f"{data}-{preset_name}" if model == "srnn" else f"{model}-{data}-{preset_name}")
    candidates = [base] + [base.with_name(f"{base.name}-{i}") for i in range(2, 1000)]
    taken = [d for d in candidates if (d / "config.json").exists()]
    if resume:
        return taken[-1] if taken else base
    return next(d for d in candidates if not (d / "config.json").exists())


def _data_dir(data_dir, run_dir):
    """--data-dir, else $SRNN_DATA_DIR, else the directory the run recorded, else the cache."""
    if data_dir is not None or os.environ.get(DATA_DIR_ENV) or run_dir is None:
        return data_dir
    return recorded_data_dir(run_dir)


def _evaluate(args):
    params, config, tc = _load(args)
    if args.iw_samples is not None and args.iw_samples < 1:
        raise ConfigError(f"--iw-samples must be at least 1, got {args.iw_samples}")
    K = args.iw_samples or tc.iw_samples
    run_dir = args.run_dir or (args.checkpoint.parent if (args.checkpoint.parent / "config.json").exists() else None)
    dataset = load_dataset(tc.dataset, tc.variant, _data_dir(args.data_dir, run_dir))
    engine = _engine(args, config, tc.dtype, args.backend).load(params)
    teacher = engine.for_model(*dataset.teacher) if dataset.teacher else None
    metrics = evaluate(engine, getattr(dataset, args.split), K, args.seed, teacher)
    print(f"{tc.dataset} ({dataset.variant}), {args.split} split:")
    print(format_metrics(metrics))


def _sample(args):
    params, config, tc = _load(args)
    if args.num < 1 or args.length < 1:
        raise ConfigError(f"--num and --length must be at least 1, got {args.num} and {args.length}")
    if config.emission != "bernoulli":
        raise ConfigError("sample writes piano rolls, which need a model with bernoulli emission")
    rolls = generate(_engine(args, config, tc.dtype, tc.backend).load(params), args.num, args.length, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, roll in enumerate(rolls):
        stem = args.out / f"sample_{i:03d}"
        piano_roll_png(roll, stem.with_suffix(".png"), title=f"sample {i}")
        write_midi(roll, stem.with_suffix(".mid"), args.seconds_per_step)
    print(f"wrote {len(rolls)} samples (sample_*.png, sample_*.mid) to {args.out}")


def _load(args):
    """(params, Config, TrainConfig) of --checkpoint, or of --run-dir's best.npz."""
    path = args.checkpoint or args.run_dir / "best.npz"
    ckpt = checkpoint.load(path)
    if ckpt.train_config is None:
        raise DataError(f"{path} does not say which dataset it was trained on (no training settings)")
    return ckpt.params, ckpt.config, ckpt.train_config


def _engine(args, config, dtype, backend):
    """The engine of --impl (srnn.engine.ENGINES): ref on `backend`, or torch on --device."""
    if args.impl == "ref" and (args.device is not None or args.bf16):
        raise ConfigError("--device and --bf16 are options of --impl torch")
    return make_engine(args.impl, config, dtype, EngineOptions(backend, args.device, args.bf16))


if __name__ == "__main__":
    sys.exit(main())
