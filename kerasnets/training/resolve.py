"""The settings of a run: built-in defaults < recipe < explicit settings, or, for
``--resume``, those recorded in the run's ``config.json``."""

from __future__ import annotations

from pathlib import Path

from kerasnets.data.specs import native_size
from kerasnets.registry import model_info
from kerasnets.training import artifacts
from kerasnets.training.config import TrainConfig
from kerasnets.training.errors import TrainingError
from kerasnets.training.finetune import follow_weights, with_source_model
from kerasnets.training.recipes import recipe_settings


def resolve_config(explicit: dict) -> TrainConfig:
    """Defaults < recipe < ``explicit`` settings. The modern recipe trains at the data
    set's native size, which the data set's spec knows."""
    base = TrainConfig()
    explicit = with_source_model(explicit)
    model = explicit.get("model", base.model)
    dataset = explicit.get("dataset", base.dataset)
    recipe = explicit.get("recipe", base.recipe)
    model_info(model)  # unknown name: ValueError with suggestions, before anything else
    native = native_size(dataset, explicit.get("image_size"))
    settings = recipe_settings(recipe, model, dataset, native)
    merged = {**base.to_dict(), **settings, **explicit}
    if merged.get("lr_reference_batch") is None:  # the batch size the recipe's lr is for
        merged["lr_reference_batch"] = {**base.to_dict(), **settings}["batch_size"]
    merged["model_options"] = {**settings.get("model_options", {}),
                               **explicit.get("model_options", {})}
    return TrainConfig.from_dict(follow_weights(merged, explicit))


def resume_config(run_dir, host_settings=None) -> TrainConfig:
    """The settings of the run in ``run_dir`` (for ``--resume``), with this host's place
    in a cluster (``host_settings``) as given now."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise TrainingError(f"Cannot resume {run_dir}: no config.json there. --resume takes "
                            f"a run directory made by train.py.")
    return TrainConfig.from_dict({**artifacts.read_json(path)["settings"],
                                  **(host_settings or {})})
