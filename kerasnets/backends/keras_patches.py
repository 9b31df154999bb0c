"""Every patch of Keras internals, in one place.

Each patch works around one upstream Keras issue (its ``ISSUE``), is written for
a range of Keras versions (its ``KERAS_VERSIONS``: from, inclusive, to, exclusive),
both given to :func:`keras_patch`, and is a context manager that undoes itself on
exit. On a Keras version outside the range a patch raises :class:`KerasPatchError`
instead of patching code it was not written for: check whether the issue is fixed
there (then drop the patch) or whether the patched function is unchanged (then
widen the range).

Two patches are installed for the process instead, because they change no result:

* :func:`torch_slots_follow_variable_layout` changes only where numbers sit in memory
  (with :func:`torch_variable_storage` and :func:`set_torch_variable_storage`, the
  torch storage of a Keras variable); on a Keras version they do not know they do
  nothing, and the torch kernels they serve take their slower, layout-free path;
* :func:`torch_direct_layer_calls` (installed by ``import kerasnets`` on torch) calls
  a Functional model's layers without ``Layer.__call__``'s bookkeeping where it would
  do nothing; on a Keras version it does not know, every layer goes through
  ``Layer.__call__`` as before. :func:`layer_calls_through_keras` turns it off for a
  block.
"""

from __future__ import annotations

import contextlib
import functools
import re

import keras
import numpy as np


class KerasPatchError(RuntimeError):
    """A patch of Keras internals was asked for on a Keras version it does not know."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def written_for(versions: tuple[str, str], current: str | None = None) -> bool:
    """Whether Keras (``current``, default the installed one) is in ``versions``: from,
    inclusive, to, exclusive."""
    low, high = versions
    return _version(low) <= _version(current or keras.__version__) < _version(high)


def require(patch: str, issue: str, versions: tuple[str, str], current: str | None = None):
    """Raise :class:`KerasPatchError` unless Keras (``current``) is in ``versions``."""
    current = current or keras.__version__
    low, high = versions
    if not written_for(versions, current):
        raise KerasPatchError(
            f"kerasnets' patch {patch!r} (for {issue}) is written for Keras >={low},<{high}, "
            f"not {current}. See whether {issue} is fixed in Keras {current} (then remove "
            f"the patch from kerasnets/backends/keras_patches.py) or install "
            f"keras>={low},<{high}.")


def keras_patch(issue: str, keras_versions: tuple[str, str]):
    """Make a generator a context manager patching Keras for ``issue``, checked against
    ``keras_versions`` each time it is entered."""
    def decorate(generator):
        manager = contextlib.contextmanager(generator)

        @functools.wraps(generator)
        def patched(*args, **kwargs):
            require(generator.__name__, issue, keras_versions)
            return manager(*args, **kwargs)
        patched.ISSUE, patched.KERAS_VERSIONS = issue, keras_versions
        return patched
    return decorate


@keras_patch("keras-team/keras#20585", keras_versions=("3.15", "3.16"))
def multi_worker_mirrored(model, strategy):
    """Keras' TensorFlow trainer under ``MultiWorkerMirroredStrategy``
    (keras-team/keras#20585, open for Keras 3.15), for ``model.fit``/``evaluate``
    calls inside this context:

    * the symbolic build reduces a per-replica batch with ``strategy.reduce`` and
      fails: ``model._maybe_symbolic_build`` builds from the first replica's batch;
    * scalar metrics in the logs are reduced along an axis they do not have:
      ``trainer.reduce_per_replica`` means them over replicas instead.
    """
    import types

    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def first_replica(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(first_replica, next(it))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy_, reduction):
        if reduction not in ("auto", "mean") or \
                not tf_trainer._collective_all_reduce_multi_worker(strategy_):
            return original(values, strategy_, reduction)

        def mean(value):
            if not isinstance(value, tf.distribute.DistributedValues):
                return value
            rank = strategy_.experimental_local_results(value)[0].shape.rank
            return strategy_.reduce("MEAN", value, axis=0 if rank else None)
        return tree.map_structure(mean, values)

    model._maybe_symbolic_build = types.MethodType(maybe_symbolic_build, model)
    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original
        del model._maybe_symbolic_build  # the class' own method again


@keras_patch("keras-team/keras#18482", keras_versions=("3.15", "3.16"))
def float64():
    """Build and run in float64 (with ``JAX_ENABLE_X64=1`` on JAX).

    Keras' ``result_type("float64", "float32")`` is float32 on JAX and torch in Keras
    3.15: since keras-team/keras#18482 it follows JAX's type promotion (no upstream
    issue tracks the float64 case; none was found), so ``BatchNormalization`` quietly
    computes in float32 there; within this context float64 wins, as it does on TensorFlow.
    Also sets floatx and the dtype policy to float64, and restores all three.
    """
    from keras.src import backend as keras_backend

    original = keras_backend.result_type

    def result_type(*dtypes):
        named = [keras_backend.standardize_dtype(d) for d in dtypes
                 if d is not None and not isinstance(d, (bool, int, float))]
        return "float64" if "float64" in named else original(*dtypes)

    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras_backend.result_type = result_type
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras_backend.result_type = original
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)


class _BatchSeed(keras.random.SeedGenerator):
    """A ``SeedGenerator`` without state: its k-th draw is a fixed function of
    (``base``, ``salt``, k). ``base`` is an integer pair (a tf tensor inside a graph, a
    numpy array otherwise); Keras' random ops accept a ``SeedGenerator`` as ``seed``."""

    def __init__(self, base, salt: int):  # no super().__init__: no state variable
        self._base, self._salt, self._draws = base, salt, 0

    def next(self, ordered=True):
        self._draws += 1
        offset = np.array([self._salt * 2**20 + self._draws, 0], np.int64)
        if isinstance(self._base, np.ndarray):  # eager, without TensorFlow
            return (self._base.astype(np.int64) + offset).astype(np.uint32)
        return self._base + offset


@keras_patch("tensorflow/tensorflow#44491", keras_versions=("3.15", "3.16"))
def batch_seeded(layer, base, salt: int):
    """Within this context, Keras' random preprocessing ``layer`` draws from ``base``
    (an integer pair, e.g. (run seed, global batch index)) instead of its own
    ``SeedGenerator``.

    A Keras random layer (``RandomCrop``, ``RandomFlip``, ``RandAugment``,
    ``RandomErasing``, ``MixUp``, ``CutMix``) keeps its seed in one stateful
    variable; inside a parallel ``tf.data`` map the batches race for it
    (tensorflow/tensorflow#44491: stateful random ops in a parallel map are not
    deterministic, ``deterministic=True`` or not), and a resumed run restarts it. Keras
    3.15 has no public per-call seed (``RandAugment`` ignores the ``seed`` argument of
    ``get_random_transformation``), so this replaces the layer's
    ``_get_seed_generator`` with one returning a stateless per-batch generator: each
    batch's augmentation is then a function of (seed, batch index) alone. ``salt``
    gives each layer its own stream. Used at trace time in tf.data; callers running
    eagerly from several threads must hold a lock around it.
    """
    generator = _BatchSeed(base, salt)
    object.__setattr__(layer, "_get_seed_generator", lambda backend=None: generator)
    try:
        yield
    finally:
        object.__delattr__(layer, "_get_seed_generator")  # the class' method again


# Keras versions whose torch variables keep their storage as a ``torch.nn.Parameter``
# in ``variable._value`` (keras/src/backend/torch/core.py), assign with ``copy_``
# (which keeps the destination's strides), and whose optimizers create every slot
# variable through ``BaseOptimizer.add_variable_from_reference``.
TORCH_STORAGE_KERAS_VERSIONS = ("3.15", "3.16")


def torch_variable_storage(variable):
    """The torch tensor holding a torch-backend Keras variable's value, or None (another
    backend, an unbuilt variable, or a Keras version this does not know)."""
    if keras.backend.backend() != "torch" or not written_for(TORCH_STORAGE_KERAS_VERSIONS):
        return None
    return getattr(variable, "_value", None)


def set_torch_variable_storage(variable, tensor):
    """Give a torch-backend Keras variable ``tensor`` (same shape, dtype and values;
    other strides) as its storage. The ``Parameter`` object stays the same (its
    ``.data`` changes), so the layer's ``torch_params`` and any optimizer still hold it;
    Keras' ``assign`` copies into it, keeping the new strides."""
    parameter = variable._value
    if tuple(tensor.shape) != tuple(parameter.shape) or tensor.dtype != parameter.dtype:
        raise ValueError(f"new storage {tuple(tensor.shape)} {tensor.dtype} does not match "
                         f"{variable.path}: {tuple(parameter.shape)} {parameter.dtype}")
    parameter.data = tensor


_SLOTS_PATCHED = False


def torch_slots_follow_variable_layout():
    """Make every optimizer slot (SGD's momentum, Adam's moments, accumulated gradients,
    EMA copies) created from a torch variable stored with other strides than the
    default (:func:`set_torch_variable_storage`) take that variable's strides, as
    ``torch.optim`` does (``zeros_like(p, memory_format=torch.preserve_format)``).

    Keras 3.15 creates slots contiguous; against a kernel stored in torch's layout,
    every update would then read and write across strides (ResNet-18 at 64x64 on torch:
    139 against 151 training images/s in alternating runs). Slots of variables with the
    default strides are untouched. Installed once, for the process; nothing on a Keras
    version this does not know.
    """
    global _SLOTS_PATCHED
    if _SLOTS_PATCHED or not written_for(TORCH_STORAGE_KERAS_VERSIONS):
        return
    import torch
    from keras.src.optimizers import base_optimizer

    original = base_optimizer.BaseOptimizer.add_variable_from_reference

    @functools.wraps(original)
    def add_variable_from_reference(self, reference_variable, *args, **kwargs):
        slot = original(self, reference_variable, *args, **kwargs)
        reference = torch_variable_storage(reference_variable)
        storage = torch_variable_storage(slot)
        if (isinstance(reference, torch.Tensor) and isinstance(storage, torch.Tensor)
                and reference.shape == storage.shape and not reference.is_contiguous()):
            # preserve_format: the reference's strides where it is dense (a kernel
            # stored in torch's layout is), contiguous otherwise
            relaid = torch.empty_like(reference, dtype=storage.dtype, device=storage.device,
                                      requires_grad=False)
            relaid.copy_(storage.detach())
            set_torch_variable_storage(slot, relaid)
        return slot

    base_optimizer.BaseOptimizer.add_variable_from_reference = add_variable_from_reference
    _SLOTS_PATCHED = True


# Keras versions whose ``Layer.__call__`` (keras/src/layers/layer.py) and Functional
# ``operation_fn`` (keras/src/models/functional.py) :func:`torch_direct_layer_calls`
# was checked against, step by step.
DIRECT_CALL_KERAS_VERSIONS = ("3.15", "3.16")

_ORIGINAL_OPERATION_FN = None


def _direct_call(layer, args, kwargs, torch):
    """``layer(*args, **kwargs)`` inside a running Functional model on torch, as
    ``Layer.__call__`` computes it, or ``NotImplemented`` where one of its steps would
    do something (the caller then runs ``Layer.__call__``).

    The steps of Keras 3.15's ``Layer.__call__`` that do nothing for a built,
    non-Model layer called eagerly in float32 on one tensor (or a list of them) without
    a mask, an activity regularizer, rematerialisation, quantisation, a distribution or
    an autocast scope, are skipped: input conversion (the dtypes already match), the
    positional-tensor check, ``CallSpec``'s signature binding, build, name scopes,
    ``Node`` creation and traceback filtering. What can act is kept: the input spec
    check (its error messages), the call context's arguments (``training``), resolved
    and stashed for the layers after it exactly as ``_resolve_and_populate_arg`` does,
    the ``mask`` argument Keras fills in (none), and masks a layer computes from
    unmasked inputs (``compute_mask``).
    """
    from keras.src.backend.common import global_state

    if len(args) != 1 or isinstance(layer, keras.Model) or not layer.built \
            or layer.activity_regularizer is not None \
            or layer._remat_mode or getattr(layer, "quantization_mode", None) is not None:
        return NotImplemented
    context_args = layer._call_context_args
    # (Keras records the ``mask=None`` it filled in while building in the graph's nodes)
    if any(name not in context_args and not (name == "mask" and value is None)
           for name, value in kwargs.items()):
        return NotImplemented
    context = global_state.get_global_attribute("current_call_ctx")
    if context is None or global_state.get_global_attribute("autocast_scope") is not None \
            or global_state.get_global_attribute("distribution") is not None \
            or layer.compute_dtype != layer.variable_dtype:
        return NotImplemented
    first = args[0]
    tensors = (first,) if isinstance(first, torch.Tensor) else first
    if not isinstance(tensors, (tuple, list)) or not tensors:
        return NotImplemented
    wanted = getattr(torch, layer.input_dtype, None)
    for tensor in tensors:
        if not isinstance(tensor, torch.Tensor) or hasattr(tensor, "_keras_mask") or (
                layer.autocast and layer._convert_input_args
                and tensor.is_floating_point() and tensor.dtype != wanted):
            return NotImplemented

    layer._assert_input_compatibility(first)
    # the masks Keras reads from the inputs: none, in the first argument's structure
    no_masks = None if isinstance(first, torch.Tensor) else type(first)(None for _ in first)
    call_kwargs = {"mask": no_masks} if layer._call_has_mask_arg else {}
    parameters = layer._call_signature.parameters
    for name in context_args:  # Layer._resolve_and_populate_arg
        if name in kwargs:
            value = kwargs[name]
        elif context.get_value(name) is not None:
            value = context.get_value(name)
        else:
            parameter = parameters.get(name)
            value = None if parameter is None or parameter.default is parameter.empty \
                else parameter.default
        context.set_value(name, value)
        if layer._call_has_context_arg.get(name, False) and value is not None:
            call_kwargs[name] = value
    if not layer._called:
        layer._called = True
    outputs = layer.call(first, **call_kwargs)
    if layer.supports_masking and not getattr(type(layer).compute_mask, "_is_default", False):
        layer._set_mask_metadata(first, outputs, no_masks)
    return outputs


def torch_direct_layer_calls():
    """On torch, run the layers of a Functional model (every kerasnets model) by
    calling their ``call`` directly where Keras' ``Layer.__call__`` would do nothing
    more (:func:`_direct_call` lists the conditions; anything else goes through
    ``Layer.__call__``). Same calls, same arguments, same results.

    Why: torch runs eagerly, so ``Layer.__call__``'s bookkeeping (signature binding,
    pytree walks, name scopes: 40-140 us a layer here) is paid on every layer of every
    step; TensorFlow and JAX pay it once, while tracing. On the 2-core EPYC, 64x64, batch
    32, alternating ``python -m kerasnets.benchmarks.workloads`` runs with and without
    ``"layer_calls_through_keras"`` (docs/benchmarks.md), training images/s: MobileNetV2
    239-253 -> 260-289, DenseNet-121 62-64 -> 79-80; ResNet-18 unchanged.

    A layer that raises is called again through ``Layer.__call__``, so the error comes
    with Keras' message naming the layer and its arguments.

    Installed once, for the process (Keras' Functional looks ``operation_fn`` up in its
    module at each call), on the torch backend only, and only on the Keras versions it
    was checked against; :func:`layer_calls_through_keras` turns it off for a block.
    """
    global _ORIGINAL_OPERATION_FN
    if _ORIGINAL_OPERATION_FN is not None or keras.backend.backend() != "torch" \
            or not written_for(DIRECT_CALL_KERAS_VERSIONS):
        return
    import torch
    from keras.src.models import functional

    original = functional.operation_fn

    @functools.wraps(original)
    def operation_fn(operation, **call_context_args):
        through_keras = original(operation, **call_context_args)
        if not isinstance(operation, keras.layers.Layer):
            return through_keras

        def call(*args, **kwargs):
            for name, value in call_context_args.items():  # as Keras' operation_fn
                if name in getattr(operation, "_call_context_args", {}) and value is not None:
                    kwargs[name] = value
            try:
                outputs = _direct_call(operation, args, kwargs, torch)
            except Exception:  # noqa: BLE001  Keras' own call raises it again, naming the layer
                outputs = NotImplemented
            return through_keras(*args, **kwargs) if outputs is NotImplemented else outputs
        return call

    _ORIGINAL_OPERATION_FN = original
    functional.operation_fn = operation_fn


@contextlib.contextmanager
def layer_calls_through_keras():
    """Within this block every layer of a Functional model runs through Keras'
    ``Layer.__call__`` (undoes :func:`torch_direct_layer_calls` for the block): to
    compare the two, or to rule the shortcut out when something looks wrong."""
    if _ORIGINAL_OPERATION_FN is None:
        yield
        return
    from keras.src.models import functional

    patched, functional.operation_fn = functional.operation_fn, _ORIGINAL_OPERATION_FN
    try:
        yield
    finally:
        functional.operation_fn = patched
