"""Using a trained model again: evaluate it on a split, or classify image files.

A run directory carries what is needed (``config.json``: data set, image size,
preprocessing, class names); a bare ``.keras`` file is fed with plain [0, 1]
scaling at its own input size. ``.keras`` files are backend-independent, so a
model trained under one backend evaluates under any other.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

import kerasnets  # noqa: F401  (registers the custom layers .keras files may use)
from kerasnets.data import Preprocessing, Preprocessor, load_dataset, make_pipeline
from kerasnets.training import artifacts
from kerasnets.training.compile import compile_classifier, main_results
from kerasnets.training.errors import TrainingError

CHECKPOINTS = {"final": "model.keras", "best": "best.keras", "interrupted": "interrupted.keras"}


def load_trained(path, checkpoint="final"):
    """``(model, run_config or None)`` for a run directory or a ``.keras`` file."""
    path = Path(path)
    if path.is_dir():
        model_path = path / CHECKPOINTS[checkpoint]
        config_path = path / "config.json"
        if not model_path.exists():
            present = [name for name in CHECKPOINTS.values() if (path / name).exists()]
            raise TrainingError(f"{path} has no {model_path.name}"
                                + (f"; it has {', '.join(present)} (use --checkpoint)"
                                   if present else "; is it a run directory of train.py?"))
    elif path.suffix == ".keras" and path.exists():
        model_path, config_path = path, path.parent / "config.json"
    else:
        raise TrainingError(f"{path} is neither a run directory nor a .keras file.")
    model = _load_model(model_path)
    run = artifacts.read_json(config_path) if config_path.exists() else None
    return model, run


def _load_model(path: Path):
    """``keras.saving.load_model`` (safe mode), its failures as one line that says why."""
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001  (Keras raises TypeError, ValueError, ...)
        lambdas = _lambda_functions(path)
        if lambdas:
            raise TrainingError(_lambda_message(path, lambdas)) from None
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise TrainingError(f"Cannot load {path} as a Keras model ({type(error).__name__}: "
                            f"{first[:300]}). Is it a .keras file saved by model.save, "
                            f"complete and with every custom layer importable?") from None


def _lambda_functions(path: Path) -> list[tuple[str, str | None]]:
    """``(layer name, function name or None for a Python lambda)`` of every Lambda
    layer in the ``.keras`` file's config (nested models included); [] if unreadable."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda" and isinstance(node.get("config"), dict):
                function = node["config"].get("function")
                name = function.get("config") if isinstance(function, dict) and \
                    function.get("class_name") != "__lambda__" else None
                found.append((node["config"].get("name", "?"), name if isinstance(name, str)
                              else None))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(config)
    return found


def _lambda_message(path, lambdas) -> str:
    layer, function = lambdas[0]
    more = f" (and {len(lambdas) - 1} more Lambda layers)" if len(lambdas) > 1 else ""
    if function is None:
        return (f"Cannot load {path}: its Lambda layer '{layer}'{more} holds Python "
                f"bytecode, which Keras runs only when loading with safe_mode=False. Only "
                f"for a file you trust: keras.saving.load_model(path, safe_mode=False); "
                f"otherwise rebuild the model without Lambda layers (kerasnets models have "
                f"none).")
    return (f"Cannot load {path}: its Lambda layer '{layer}'{more} calls the Python function "
            f"'{function}', whose code is not in the file. Only for a file you trust: import "
            f"the module defining {function}, registered with "
            f"@keras.saving.register_keras_serializable(), and load with "
            f"keras.saving.load_model(path, safe_mode=False); otherwise rebuild the model "
            f"without Lambda layers (kerasnets models have none).")


def _model_image_shape(model):
    """``((height, width), channels, channels_first)`` of the model's input."""
    data_format = next((layer.data_format for layer in model.layers
                        if hasattr(layer, "data_format")), "channels_last")
    shape = model.input_shape[1:]
    channels_first = data_format == "channels_first"
    height, width, channels = (shape[1], shape[2], shape[0]) if channels_first else shape
    return (height, width), channels, channels_first


def _preprocessing(model, run):
    if run is not None:
        return Preprocessing(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in run["preprocessing"].items()}).without_augmentation()
    return Preprocessing(channels=_model_image_shape(model)[1])


def evaluate(path, *, checkpoint="final", split="test", dataset=None, data_dir=None,
             batch_size=256, pipeline="tfdata") -> dict:
    """Loss, top-1 and top-5 accuracy of a trained model on a data set split."""
    model, run = load_trained(path, checkpoint)
    settings = run["settings"] if run else {}
    size, channels, channels_first = _model_image_shape(model)
    data = load_dataset(dataset or settings.get("dataset", "fashion_mnist"),
                        data_dir=data_dir or settings.get("data_dir"),
                        val_fraction=settings.get("val_fraction", 0.0) if split == "val" else 0.0,
                        seed=settings.get("seed", 0), image_size=size)
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    if x is None:
        raise TrainingError(f"No {split!r} split: the run had no --val-fraction.")
    classes = model.outputs[0].shape[-1]  # the main output (GoogLeNet has auxiliary ones)
    if classes != data.num_classes:
        raise TrainingError(f"The model predicts {classes} classes, "
                            f"{data.name} has {data.num_classes}.")
    preprocessing = _preprocessing(model, run)
    outputs = len(model.outputs)
    pipe = make_pipeline(pipeline, x, y, num_classes=data.num_classes, batch_size=batch_size,
                         preprocessor=Preprocessor(preprocessing, size), training=False,
                         label_copies=outputs,
                         data_format="channels_first" if channels_first else "channels_last")
    results = compile_classifier(model).evaluate(pipe, verbose=0, return_dict=True)
    return {"split": split, "examples": int(len(x)), **main_results(model, results),
            "backend": keras.backend.backend(), "trained_with": run["backend"] if run else None}


def load_images(paths, size, channels):
    """Image files as a uint8 NHWC batch, in the model's size and channels (converted
    with PIL to gray or RGB, resized bilinearly)."""
    from kerasnets.data.folders import open_image

    images = []
    for path in paths:
        image = open_image(path, "grayscale" if channels == 1 else "rgb", tuple(size))
        if image.mode != "L" and channels == 1:  # load_img keeps 16/32-bit gray as it is
            image = image.convert("L")
        images.append(np.asarray(image, np.uint8).reshape(size[0], size[1], channels))
    return np.stack(images)


def predict_files(path, images, *, checkpoint="final", top_k=5) -> list[list[tuple]]:
    """Top-``k`` ``(class name, probability)`` for each image file."""
    model, run = load_trained(path, checkpoint)
    size, channels, channels_first = _model_image_shape(model)
    preprocessing = _preprocessing(model, run)
    # a model trained on grayscale repeated to RGB sees gray images here too
    x = load_images(images, size, 1 if run and run["settings"].get("to_rgb") else channels)
    batch, _ = Preprocessor(preprocessing, size)(
        *_stage_one(x, preprocessing), training=False)
    batch = keras.ops.convert_to_numpy(batch)
    if channels_first:
        batch = np.transpose(batch, (0, 3, 1, 2))
    logits = model.predict(batch, verbose=0)
    logits = logits[0] if isinstance(logits, (list, tuple)) else logits
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
    names = run["class_names"] if run else [f"class {i}" for i in range(logits.shape[-1])]
    top_k = min(top_k, len(names))
    return [[(names[i], float(p[i])) for i in np.argsort(-p)[:top_k]] for p in probabilities]


def _stage_one(x, preprocessing):
    from kerasnets.data.preprocess import load_batch_numpy

    return load_batch_numpy(x, np.zeros(len(x), np.int64), np.arange(len(x)),
                            preprocessing=preprocessing, num_classes=1, training=False)
