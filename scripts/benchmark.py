#!/usr/bin/env python
"""Benchmark kerasnets against torchvision and keras.applications on this machine.

``python scripts/benchmark.py --quick`` takes a few minutes on 2 CPU cores; the
full run (``--models``/``--backends`` to narrow it) writes the JSON and markdown
that docs/benchmarks.md is made from.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kerasnets.benchmarks.runner import (  # noqa: E402
    BACKENDS, STATISTICS, benchmark, merge_runs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 models, 1 round, few steps")
    parser.add_argument("--models", nargs="+", help="kerasnets model names")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, help="rounds (default 1 quick, 3 full)")
    parser.add_argument("--steps", type=int, help="timed steps per workload (default 8 "
                        "quick, 20 full)")
    parser.add_argument("--no-peers", action="store_true", help="kerasnets only")
    parser.add_argument("--no-pipelines", action="store_true", help="skip the pipeline rows")
    parser.add_argument("--scaling", action="store_true", help="instead: images/s against "
                        "batch size and image size for the first --models (default resnet18) "
                        "on each backend and torchvision; writes docs/scaling.png and .json")
    parser.add_argument("--merge", nargs="+", metavar="RUN.json", help="instead: merge "
                        "earlier runs of this machine into one report, each figure the best "
                        "(or --statistic median) of all their rounds, for the models every "
                        "run has")
    parser.add_argument("--statistic", choices=STATISTICS, default="best",
                        help="each figure of several rounds (--repeats, --merge): the best "
                        "(default) or the median, which one round's drift moves less")
    parser.add_argument("--output", default="benchmark-results/latest",
                        help="writes OUTPUT.json and OUTPUT.md")
    args = parser.parse_args(argv)
    if args.scaling:
        from kerasnets.benchmarks.scaling import scaling

        scaling((args.models or ["resnet18"])[0], tuple(args.backends))
        print("written to docs/scaling.png and docs/scaling.json")
        return 0
    if args.merge:
        try:
            report = merge_runs(args.merge, output=args.output, statistic=args.statistic)
        except (OSError, ValueError, KeyError) as error:
            parser.error(f"cannot merge {' '.join(args.merge)}: {type(error).__name__}: "
                         f"{error} (merge the .json files scripts/benchmark.py wrote)")
        print(report["markdown"])
        print(f"\nwritten to {args.output}.json and .md")
        return 0
    report = benchmark(args.models, tuple(args.backends), quick=args.quick,
                       repeats=args.repeats, steps=args.steps, peers=not args.no_peers,
                       pipelines=not args.no_pipelines, output=args.output,
                       statistic=args.statistic)
    print(report["markdown"])
    print(f"\n{report['seconds']:.0f} s; written to {args.output}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
