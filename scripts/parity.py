#!/usr/bin/env python
"""Check every model across TensorFlow, JAX and torch (same weights, same answers)
and print the worst difference per check; see kerasnets/interop/parity.py."""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kerasnets.interop.parity import TOLERANCES, format_report, run_parity  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="*", help="default: every registered model")
    parser.add_argument("--workdir", help="keep the intermediate files here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = run_parity(args.workdir or tmp, args.models or None)
    print(format_report(report))
    failed = [(m, c) for m, worst in report.items() for c, v in worst.items()
              if v > TOLERANCES[c]]
    for model, check in failed:
        print(f"FAILED: {model} {check} {report[model][check]:.2e} > {TOLERANCES[check]:.0e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
