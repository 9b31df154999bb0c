"""Fine-tuning: start a run from pretrained weights (``train.py --weights SOURCE``).

A source is ``imagenet`` (torchvision's checkpoint from the torch.hub cache), a
``.keras`` or ``.weights.h5`` file, a run directory of ours (its ``model.keras``; pass
``RUN_DIR/best.keras`` for its best epoch) or a torchvision ``state_dict`` saved as
``.pth`` (read with ``torch.load(weights_only=True)``). The model is built for the
data set's classes; every weight but the classifier's is loaded from the source, and
any other difference (another model, other options) is an error naming the first
layer that does not fit. The classifier is the layer (or, for GoogLeNet, the layers)
that computes a model output: it is always new.

Input handling follows the weights (:func:`follow_weights`): ImageNet weights get
their resolution, ImageNet's mean/std and RGB; a run of ours, its own preprocessing
and architecture options; flags the user gave win.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from kerasnets.interop.imagenet import file_sha256
from kerasnets.registry import model_info
from kerasnets.training import artifacts, phases
from kerasnets.training.errors import TrainingError
from kerasnets.training.recipes import crop_padding_for

RUN_CHECKPOINT = "model.keras"  # what --weights RUN_DIR loads
# Settings a run of ours passes on to a run fine-tuned from it, unless given again.
INHERITED_INPUT = ("image_size", "normalize", "to_rgb")
# Recipe options that take a model away from torchvision's architecture (the modern
# recipe's small-input stem for small images): not applied to torchvision weights.
NOT_TORCHVISION = ("small_input",)


@dataclass
class Source:
    """Where the pretrained weights come from."""

    kind: str  # imagenet, keras (.keras / .weights.h5), pth
    text: str  # as the user gave it
    path: Path | None = None  # the file that is read
    run_config: dict | None = None  # config.json of a run of ours

    @classmethod
    def parse(cls, text: str) -> "Source":
        if text == "imagenet":
            return cls("imagenet", text)
        path = Path(text).expanduser()
        if path.is_dir():
            if not (path / "config.json").exists():
                raise TrainingError(f"--weights {text}: a directory must be a run directory "
                                    f"of train.py (with config.json and {RUN_CHECKPOINT}).")
            if not (path / RUN_CHECKPOINT).exists():
                raise TrainingError(f"--weights {text}: the run has no {RUN_CHECKPOINT} (not "
                                    f"finished?); pass {path / 'best.keras'} or finish it "
                                    f"with --resume {text}.")
            return cls("keras", text, (path / RUN_CHECKPOINT).resolve(),
                       artifacts.read_json(path / "config.json"))
        if not path.is_file():
            raise TrainingError(f"--weights {text}: no such file or directory. Give "
                                f"imagenet, a .keras/.weights.h5/.pth file or a run directory.")
        if text.endswith((".keras", ".weights.h5")):
            beside = path.parent / "config.json"  # a checkpoint inside a run directory
            run = artifacts.read_json(beside) if text.endswith(".keras") and beside.exists() \
                else None
            return cls("keras", text, path.resolve(), run)
        if path.suffix in (".pth", ".pt"):
            return cls("pth", text, path.resolve())
        raise TrainingError(f"--weights {text}: unknown kind of file; expected .keras, "
                            f".weights.h5, .pth (a torchvision state_dict) or a run directory.")

    def model_name(self) -> str | None:
        """The zoo model the source was saved from, when the source says."""
        if self.run_config is not None:
            return self.run_config["settings"]["model"]
        if self.path is not None and self.path.suffix == ".keras":
            try:
                with zipfile.ZipFile(self.path) as archive:
                    return json.loads(archive.read("config.json"))["config"]["name"]
            except (OSError, KeyError, ValueError, zipfile.BadZipFile):
                raise TrainingError(f"--weights {self.text}: not a readable .keras file "
                                    f"(saved by model.save?).") from None
        return None


def with_source_model(explicit: dict) -> dict:
    """``explicit`` with the model of ``--weights`` (a run or ``.keras`` file of ours) when
    no model was named: ``train.py --weights RUN_DIR`` fine-tunes the run's model."""
    if "model" in explicit or not explicit.get("weights"):
        return explicit
    name = Source.parse(explicit["weights"]).model_name()
    return {**explicit, "model": name} if name else explicit


def follow_weights(settings: dict, explicit: dict) -> dict:
    """``settings`` (defaults < recipe < explicit) with what the weights need, where the
    user did not say otherwise; prints one line saying what was chosen."""
    if not settings.get("weights"):
        return settings
    source = Source.parse(settings["weights"])
    chosen = {}
    if source.kind == "imagenet":
        from kerasnets.interop.imagenet import published_weights

        weights = published_weights(model_info(settings["model"]))
        chosen = dict(image_size=weights.crop_size, normalize="imagenet", to_rgb=True)
    if source.kind in ("imagenet", "pth"):
        recipe = {k: v for k, v in settings["model_options"].items()
                  if k not in NOT_TORCHVISION}
        settings["model_options"] = {**recipe, **(weights.options if chosen else {}),
                                     **explicit.get("model_options", {})}
    else:
        name = source.model_name()
        if name is not None and name != settings["model"]:
            given = "asked for" if "model" in explicit else "the default model is"
            raise TrainingError(f"--weights {source.text} holds {name}, but {given} "
                                f"{settings['model']}: train {name} (or leave the model "
                                f"name out), or give weights of {settings['model']}.")
        if source.run_config is not None:
            previous = source.run_config["settings"]
            chosen = {k: previous[k] for k in INHERITED_INPUT}
            settings["model_options"] = {**previous["model_options"],
                                         **explicit.get("model_options", {})}
    taken = {k: v for k, v in chosen.items() if k not in explicit}
    settings.update(taken)
    if "image_size" in taken and settings.get("crop_padding") and "crop_padding" not in explicit:
        # The recipe sized its random crop (an eighth of the image) for the size it picked
        # before the weights set theirs: a 28 px source fine-tuned on a folder, where the
        # recipe picks 224, was trained on 28 px images shifted by up to 28 px and learnt
        # nothing. Size it for the weights' input.
        taken["crop_padding"] = settings["crop_padding"] = crop_padding_for(
            settings["image_size"])
    if chosen:
        words = [_as_flag(k, v) for k, v in taken.items()]
        kept = [_as_flag(k, explicit[k]) for k in chosen if k in explicit]
        print(f"kerasnets: input for {source.text} weights: "
              + (", ".join(words) or "nothing changed")
              + (f" (yours: {', '.join(kept)})" if kept else ""), flush=True)
    return settings


def _as_flag(name, value) -> str:
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"


# --- which layers are the classifier ------------------------------------------------


def classifier_layers(model) -> list[str]:
    """Names of the layers that compute the model's outputs (walking back through
    layers without weights: activations, pooling, flatten)."""
    names = []
    for output in model.outputs:
        layer = output._keras_history.operation
        while not layer.weights:
            inputs = layer._inbound_nodes[0].input_tensors
            if len(inputs) != 1:
                break
            layer = inputs[0]._keras_history.operation
        if layer.weights and layer.name not in names:
            names.append(layer.name)
    return names


# --- loading ------------------------------------------------------------------------


@dataclass
class Loaded:
    """What a source gave the model: for config.json and the run's one-line report."""

    source: str
    path: str | None
    sha256: str | None
    loaded: list = field(default_factory=list)  # layer names
    new: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(source=self.source, path=self.path, sha256=self.sha256,
                    loaded=self.loaded, new=self.new)

    def describe(self) -> str:
        return (f"kerasnets: weights from {self.source}: {len(self.loaded)} layers loaded, "
                f"{len(self.new)} new ({', '.join(self.new)})")


def load_pretrained(model, text: str, *, download=True) -> Loaded:
    """Load ``--weights text`` into ``model`` (built for the new classes), all but the
    classifier; raises :class:`TrainingError` naming the first layer that does not fit."""
    source = Source.parse(text)
    head = classifier_layers(model)
    if source.kind == "imagenet":
        from kerasnets.interop import imagenet

        info = model_info(model.name)
        state = imagenet.imagenet_state_dict(info, download=download)
        file = imagenet.torchvision_checkpoint(info, download=False) \
            if (imagenet.torch_hub_dir() / info.weights.filename).exists() else None
        _load_state_dict(model, state, head, text)
    elif source.kind == "pth":
        file = source.path
        _load_state_dict(model, _read_pth(file), head, text)
    else:
        file = source.path
        _load_keras(model, file, head, text)
    loaded = [layer.name for layer in model.layers if layer.weights and layer.name not in head]
    return Loaded(text, str(file) if file else None, file_sha256(file) if file else None,
                  loaded, head)


def _read_pth(path):
    try:
        import torch
    except ImportError:
        raise TrainingError(f"--weights {path}: reading a .pth file needs PyTorch "
                            f"(pip install torch).") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (pickle and zip errors of many kinds)
        raise TrainingError(f"--weights {path}: torch.load(weights_only=True) cannot read it "
                            f"({type(error).__name__}); give a torchvision state_dict "
                            f"(torch.save(model.state_dict(), PATH)).") from None
    if not isinstance(state, dict):
        raise TrainingError(f"--weights {path}: holds a {type(state).__name__}, not a "
                            f"state_dict; save model.state_dict().")
    return state


def _load_state_dict(model, state: dict, head: list, text: str):
    """torchvision tensors, strictly (interop's checks), except that the classifier's
    tensors are replaced by the model's own fresh ones."""
    from kerasnets.interop.torchvision import load_torchvision_weights, torch_paths

    paths = torch_paths(model) if model_info(model.name).torchvision else {}
    state = dict(state)
    for name in head:
        layer, prefix = model.get_layer(name), paths.get(name)
        if prefix is None:
            continue
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        axes = (1, 0) if kernel.ndim == 2 else (3, 2, 0, 1)  # Keras -> torch layout
        state[f"{prefix}.weight"] = np.transpose(kernel, axes)
        if layer.use_bias:
            state[f"{prefix}.bias"] = keras.ops.convert_to_numpy(layer.bias)
    try:
        load_torchvision_weights(model, state)
    except ValueError as error:
        raise TrainingError(f"--weights {text} does not fit {model.name} as built here "
                            f"(another model or other options?): {error}") from None


def _snake(name: str) -> str:
    """Keras' ``to_snake_case``: how a layer's class names its group in a weights file."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def weights_file_keys(model) -> dict[str, str]:
    """Layer name -> its group under ``layers/`` in a Keras weights file. Keras names the
    groups by class and position (``batch_normalization_3``), never by layer name, so a
    file fits a model of the same architecture whatever its head."""
    used, keys = {}, {}
    for layer in model.layers:
        base = _snake(type(layer).__name__)
        used[base] = used.get(base, -1) + 1
        keys[layer.name] = base if used[base] == 0 else f"{base}_{used[base]}"
    return keys


def _open_weights(path: Path):
    import h5py

    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive:
            return h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
    return h5py.File(path, "r")


def _load_keras(model, path: Path, head: list, text: str):
    keys = weights_file_keys(model)
    try:
        file = _open_weights(path)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise TrainingError(f"--weights {text}: cannot read its weights ({error}).") from None
    with file:
        groups = file["layers"] if "layers" in file else {}
        stores = {}
        for layer in model.layers:
            if not layer.weights or layer.name in head:
                continue
            key = keys[layer.name]
            mine = {}
            layer.save_own_variables(mine)  # the order and shapes load_own_variables wants
            theirs = {k: v[()] for k, v in groups[key]["vars"].items()} \
                if key in groups and "vars" in groups[key] else {}
            if sorted(mine) != sorted(theirs) or any(
                    np.shape(mine[k]) != np.shape(theirs[k]) for k in mine):
                shapes = [tuple(np.shape(theirs[k])) for k in sorted(theirs)]
                raise TrainingError(
                    f"--weights {text} does not fit {model.name} as built here (another "
                    f"model or other options?): layer {layer.name!r} has weights of shapes "
                    f"{[tuple(np.shape(mine[k])) for k in sorted(mine)]}, the file "
                    f"{shapes or 'none'}.")
            stores[layer.name] = theirs
        extra = sorted(set(groups) - {keys[n] for n in keys}
                       - {k for k in groups if "vars" not in groups[k]
                          or not len(groups[k]["vars"])})
        if extra:
            raise TrainingError(f"--weights {text} does not fit {model.name} as built here: "
                                f"it has weights ({', '.join(extra[:5])}) that no layer here "
                                f"takes (a larger model?).")
    for name, store in stores.items():
        model.get_layer(name).load_own_variables(store)


# --- the trainer's side ---------------------------------------------------------------


class FineTuning:
    """Builds a run's model (with ``--weights``) and compiles it for each phase
    (:mod:`kerasnets.training.phases`); ``run.py`` only calls these."""

    def __init__(self, config, steps: int, distributed=False):
        self.config, self.steps, self.distributed = config, steps, distributed
        self.head, self.frozen, self.phase = [], [], None
        self.loaded: Loaded | None = None

    def build(self, prepared, *, load=True):
        """The model for the data set's classes, with the source's weights unless
        ``load`` is False (a resumed run restores its backup instead)."""
        from kerasnets.training.compile import build_classifier

        model = build_classifier(prepared)
        self.head = classifier_layers(model)
        phases.frozen_layers(model, self.config.freeze, self.head)  # a bad name: now
        if self.config.weights and load:
            self.loaded = load_pretrained(model, self.config.weights,
                                          download=self.config.download)
            print(self.loaded.describe(), flush=True)
        return model

    def start(self, model, run, backup):
        """Compile for the phase the run's backup was written in (so that it loads with
        its optimizer), or else for the phase of the first epoch to train."""
        state = backup.read_metadata(backup.backup_dir)
        if state is not None:
            epoch = state["epoch"] if state.get("step") else state["epoch"] - 1
        else:
            epoch = run.initial_epoch - (1 if run.trained_model is not None else 0)
        self.compile(model, phases.phase_of(max(epoch, 0), self.config.head_epochs))

    def enter(self, model, epoch: int, backup):
        """Before ``fit`` from ``epoch``: recompile when a new phase begins there. A backup
        of the previous phase (a resume at the boundary) is loaded first, into the model
        it was saved from."""
        phase = phases.phase_of(epoch, self.config.head_epochs)
        if phase == self.phase:
            return
        if not backup.started and backup.restore(model) is not None:
            backup.started = True
        self.compile(model, phase)

    def compile(self, model, phase: int):
        from kerasnets.training.compile import compile_for_training

        c = self.config
        frozen = phases.phase_frozen(model, phase, c.freeze, self.head)
        phases.set_trainable(model, frozen, self.frozen)
        self.frozen, self.phase = frozen, phase
        two = c.head_epochs > 0
        epochs = (c.head_epochs if phase == phases.HEAD_ONLY else c.epochs - c.head_epochs) \
            if two else None
        slow = [v for layer in model.layers if layer.name not in self.head
                for v in layer.trainable_variables]
        multiplier = 1.0 if phase == phases.HEAD_ONLY else c.backbone_lr_multiplier
        compile_for_training(model, c, self.steps, epochs=epochs,
                             distributed=self.distributed, slow_variables=slow,
                             slow_multiplier=multiplier)
        if two or frozen or multiplier != 1.0:
            first, last = (1, c.head_epochs) if phase == phases.HEAD_ONLY else \
                (c.head_epochs + 1, c.epochs)
            span = f"epoch {first}" if first == last else f"epochs {first}-{last}"
            what = "the classifier only" if phase == phases.HEAD_ONLY else \
                (f"all but {len(frozen)} frozen layers" if frozen else "every layer")
            rate = f", backbone lr x{multiplier:g}" if multiplier != 1.0 else ""
            print(f"kerasnets: {span}: training {what}{rate}", flush=True)
        return model
