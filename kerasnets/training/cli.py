"""Command-line entry points; ``scripts/*.py`` are thin wrappers over these."""

from __future__ import annotations

import argparse
import json
import sys

from kerasnets.backends import startup
from kerasnets.data import PIPELINES, CorruptDatasetError, DatasetNotFoundError
from kerasnets.training.config import HOST_SETTINGS, build_parser, explicit_settings
from kerasnets.training.errors import TrainingError, TrainingInterrupted
from kerasnets.training.options import HelpFormatter
from kerasnets.training.resolve import resolve_config, resume_config
from kerasnets.training.run import train


def main(argv=None, prog="kerasnets-train"):
    """Train from the command line; exit 0 on success, 2 on bad input, 130 when interrupted.
    Run as a command (``argv`` None), it first restarts itself with glibc's huge pages on
    JAX (``kerasnets.backends.startup.restart_with_huge_pages``)."""
    if argv is None:
        startup.restart_with_huge_pages()
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    explicit = explicit_settings(args)
    try:
        if args.resume:
            fixed = [k for k in explicit if k not in HOST_SETTINGS]
            if fixed:
                parser.error(f"--resume takes every setting from {args.resume}/config.json; "
                             f"drop {', '.join('--' + k.replace('_', '-') for k in fixed)}")
            config, run_dir = resume_config(args.resume, explicit), args.resume
        else:
            config, run_dir = resolve_config(explicit), None
        train(config, run_dir=run_dir)  # Ctrl-C and SIGTERM: train's GracefulStop
    except TrainingInterrupted as stop:
        print(f"\nkerasnets: {stop}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # before train() took over the signals
        print("\nkerasnets: Interrupted before training started; nothing was trained.",
              file=sys.stderr)
        return 130
    except (TrainingError, DatasetNotFoundError, CorruptDatasetError, ValueError,
            FileExistsError) as error:
        print(f"kerasnets: error: {error}", file=sys.stderr)
        return 2
    return 0


def _run(function):
    """Call ``function``; known errors become one line on stderr and exit status 2."""
    try:
        function()
    except (TrainingError, DatasetNotFoundError, CorruptDatasetError, ValueError) as error:
        print(f"kerasnets: error: {error}", file=sys.stderr)
        return 2
    return 0


def evaluate_main(argv=None, prog="kerasnets-evaluate"):
    """Accuracy of a trained model (run directory or .keras) on a split, on any backend."""
    from kerasnets.training.evaluate import CHECKPOINTS, evaluate

    parser = argparse.ArgumentParser(prog=prog, description=evaluate_main.__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("path", metavar="RUN_DIR_OR_MODEL")
    parser.add_argument("--checkpoint", choices=list(CHECKPOINTS), default="final",
                        help="which model of a run directory")
    parser.add_argument("--split", choices=["test", "val", "train"], default="test")
    parser.add_argument("--dataset", help="default: the run's (fashion_mnist for a bare "
                        ".keras file)")
    parser.add_argument("--data-dir", metavar="DIR")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--pipeline", choices=list(PIPELINES), default=PIPELINES[0])
    args = parser.parse_args(argv)

    def run():
        result = evaluate(args.path, checkpoint=args.checkpoint, split=args.split,
                          dataset=args.dataset, data_dir=args.data_dir,
                          batch_size=args.batch_size, pipeline=args.pipeline)
        print(f"{args.split}: accuracy {result['accuracy']:.4f}, top-5 {result['top5']:.4f}, "
              f"loss {result['loss']:.4f} on {result['examples']} images "
              f"({result['backend']} backend; trained with {result['trained_with']})")
        print(json.dumps(result))
    return _run(run)


def predict_main(argv=None, prog="kerasnets-predict"):
    """Top-k labels with probabilities for image files, from a trained run, a .keras
    file, or a zoo model with torchvision's ImageNet weights (--weights imagenet)."""
    from kerasnets.training.evaluate import CHECKPOINTS, predict_files

    parser = argparse.ArgumentParser(prog=prog, description=predict_main.__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("model", metavar="RUN_DIR_OR_MODEL",
                        help="a run directory, a .keras file, or a model name with --weights")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--weights", help="for a model name: 'imagenet'")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--checkpoint", choices=list(CHECKPOINTS), default="final")
    args = parser.parse_args(argv)

    def run():
        import kerasnets

        if args.model in kerasnets.list_models():
            if args.weights != "imagenet":
                raise ValueError(f"{args.model} is a model name: add --weights imagenet "
                                 f"(or pass a run directory or .keras file).")
            from kerasnets.data.folders import open_image
            from kerasnets.interop.imagenet import predict_imagenet

            for image in args.images:  # a bad file: one line, before the weights load
                open_image(image, "rgb")
            model = kerasnets.create_model(args.model, weights="imagenet")
            results = predict_imagenet(model, args.images, top=args.top_k)
        else:
            results = predict_files(args.model, args.images, checkpoint=args.checkpoint,
                                    top_k=args.top_k)
        for image, top in zip(args.images, results):
            print(image)
            for label, probability in top:
                print(f"  {probability:7.2%}  {label}")
    return _run(run)


def summary_main(argv=None, prog="kerasnets-summary"):
    """model.summary() of a zoo model, or the table of every model."""
    import kerasnets

    parser = argparse.ArgumentParser(prog=prog, description=summary_main.__doc__)
    parser.add_argument("name", nargs="?", help="a model name; omit for the table of all")
    parser.add_argument("--input-shape", help="H,W,C (default: the model's)")
    parser.add_argument("--num-classes", type=int)
    args = parser.parse_args(argv)

    def run():
        if not args.name:
            print(kerasnets.profiling.model_table())
            return
        shape = tuple(int(d) for d in args.input_shape.split(",")) if args.input_shape \
            else None
        model = kerasnets.create_model(args.name, input_shape=shape,
                                       num_classes=args.num_classes)
        model.summary()
        info = kerasnets.model_info(args.name)
        print(f"{args.name}: {kerasnets.count_params(model):,} trainable parameters, "
              f"{kerasnets.count_macs(model) / 1e9:.3f} GMACs at "
              f"{'x'.join(str(d) for d in model.input_shape[1:])}; {info.paper}")
    return _run(run)


if __name__ == "__main__":
    sys.exit(main())
