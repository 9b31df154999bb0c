"""``scripts/experiment.py NAME [--quick]``: one of the seeds' questions, end to end."""

from __future__ import annotations

import argparse
import shlex
import sys

from kerasnets.training.options import HelpFormatter


def build_parser(prog="experiment.py"):
    from kerasnets.experiments import BACKENDS, EXPERIMENTS

    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=HelpFormatter,
        description="Run one experiment on the current backend (KERAS_BACKEND): train "
                    "its arms (each kept in OUTPUT_DIR like train.py's runs) and write "
                    "REPORT_DIR/NAME.md, .png and .json. "
                    + " ".join(f"{k}: {m.TITLE}." for k, m in EXPERIMENTS.items()))
    parser.add_argument("name", choices=list(EXPERIMENTS), metavar="NAME",
                        help="one of: " + ", ".join(EXPERIMENTS))
    parser.add_argument("--quick", action="store_true",
                        help="a few steps per arm, to check the pipeline (the report says so)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: write REPORT_DIR/NAME.md and .png again from "
                             "the NAME.json an earlier run wrote")
    parser.add_argument("--reuse-runs", action="store_true",
                        help="read back each arm's finished run of the same settings from "
                             "an earlier (e.g. interrupted) invocation in OUTPUT_DIR instead "
                             "of training it again (budget: and keep the epochs it "
                             "planned for them)")
    parser.add_argument("--output-dir", default="saved_models", metavar="DIR",
                        help="where the runs are kept")
    parser.add_argument("--report-dir", default="docs/experiments", metavar="DIR",
                        help="where NAME.md, NAME.png and NAME.json go")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="where the Fashion-MNIST files are (default: the usual places)")
    parser.add_argument("--arms", metavar="A,B", type=lambda t: [x for x in t.split(",") if x],
                        help="run only these arms (default: all)")
    parser.add_argument("--timing-backends", metavar="B,C",
                        type=lambda t: [x for x in t.split(",") if x and x != "none"],
                        help="backends to time each arm on, for normalization and "
                             "cardinality (default: " + ",".join(BACKENDS) + "; with "
                             "--quick the current one; 'none' for none)")
    return parser


def main(argv=None, prog="experiment.py"):
    """Exit 0 on success, 2 on bad input, 130 when interrupted."""
    import keras

    from kerasnets.data import CorruptDatasetError, DatasetNotFoundError
    from kerasnets.experiments import BACKENDS, rewrite_report, run_experiment
    from kerasnets.training.errors import TrainingError, TrainingInterrupted

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    bad = [b for b in args.timing_backends or () if b not in BACKENDS]
    if bad:
        parser.error(f"--timing-backends: unknown backend(s) {', '.join(bad)}; choose from "
                     f"{', '.join(BACKENDS)} or none")
    command = f"KERAS_BACKEND={keras.backend.backend()} python scripts/{prog} " + \
        shlex.join(argv)
    try:
        if args.report_only:
            path = rewrite_report(args.name, args.report_dir)
            print(f"kerasnets: report written to {path}")
            return 0
        path = run_experiment(args.name, quick=args.quick, output_dir=args.output_dir,
                              report_dir=args.report_dir, data_dir=args.data_dir,
                              arms=args.arms, timing_backends=args.timing_backends,
                              command=command, reuse_runs=args.reuse_runs)
    except TrainingInterrupted as stop:
        print(f"\nkerasnets: {stop}\nkerasnets: the arms that finished are kept: add "
              f"--reuse-runs to this command to go on from them", file=sys.stderr)
        return 130
    except (TrainingError, DatasetNotFoundError, CorruptDatasetError, ValueError) as error:
        print(f"kerasnets: error: {error}", file=sys.stderr)
        return 2
    print(f"kerasnets: report written to {path}")
    return 0
