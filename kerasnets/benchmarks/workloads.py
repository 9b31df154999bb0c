"""One benchmark workload, run in a process of its own (the Keras backend is fixed
at import, and a fresh process gives an honest peak memory).

``python -m kerasnets.benchmarks.workloads '<json spec>'`` prints one line
``RESULT {...}``. Kinds:

* ``kerasnets`` / ``keras_apps``: ``model.fit`` training and ``model.predict``
  inference on random images held in memory, on the current Keras backend
  (``"layer_calls_through_keras": true``: every layer through Keras' ``Layer.__call__``,
  without kerasnets' torch shortcut, to measure what the shortcut saves;
  ``"ynnpack_convolutions": true``: JAX's CPU convolutions as YNNPACK fusions, JAX's
  default, instead of XLA's own kernel that ``import kerasnets`` asks for, to measure what
  that flag changes; ``"jax_operands_fused_by_xla": true``: JAX's CPU convolutions
  without ``kerasnets.backends.jax_cpu.stored`` around them, to measure what it saves;
  ``"jax_depthwise_gradient_by_xla": true``: JAX's CPU depthwise convolutions with XLA's
  own kernel gradient, without ``jax_cpu.depthwise_per_tap_gradient``;
  ``"jax_strided_input_gradient_by_xla": true``: JAX's CPU strided convolutions with
  XLA's own input gradient, without ``jax_cpu.strided_conv``'s phases;
  ``"jax_groups_one_by_one": true``: JAX's CPU grouped convolutions one per group;
  ``"jax_max_pool_gradient_by_xla": true``: JAX's gradient of the chain of maxima;
  keras.applications always runs both ways as its users get them);
* ``torchvision``: the same workload as a plain PyTorch eager loop, NCHW or
  ``channels_last`` memory format;
* ``pipeline``: one input pipeline alone (batches per second, no model);
* ``fit_pipeline``: ``model.fit`` fed by an input pipeline, or by the same
  preprocessed tensors held in memory (``pipeline: "memory"``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np

KERAS_APPLICATIONS = {"resnet50": "ResNet50", "mobilenet_v2": "MobileNetV2",
                      "densenet121": "DenseNet121", "vgg16": "VGG16"}


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _random_batch(spec, channels_first=False):
    rng = np.random.RandomState(0)
    size, batch, channels = spec["image_size"], spec["batch_size"], spec.get("channels", 3)
    shape = (batch, channels, size, size) if channels_first else (batch, size, size, channels)
    labels = rng.randint(0, spec.get("num_classes", 1000), batch).astype("int32")
    return rng.rand(*shape).astype("float32"), labels


class _StepTimer:
    """Times ``model.fit`` steps: the first (tracing/compilation) and the rest, from the
    end of the last warm-up step to the end of the last step. Not to fit's return: on TF,
    fit returned 0-7 s after its last step and its on_train_end (ResNet-18, batch 128, in
    two of four runs), which had halved the trainer row's TF figure with 4 timed steps."""

    def __init__(self, warmup):
        import keras

        timer = self

        class Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                timer.start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                if logs and "loss" in logs:  # the step's result exists: JAX dispatches ahead
                    float(keras.ops.convert_to_numpy(logs["loss"]))
                timer.last_step_end = time.perf_counter()
                if batch == 0:
                    timer.first_step = timer.last_step_end - timer.start
                if batch == warmup - 1:
                    timer.measure_start = timer.last_step_end

        self.callback = Callback()
        self.start = self.first_step = self.measure_start = self.last_step_end = None

    @property
    def seconds(self):
        """The timed steps' wall time."""
        return self.last_step_end - self.measure_start


def _keras_model(spec):
    import keras

    if spec["kind"] == "keras_apps":
        app = getattr(keras.applications, KERAS_APPLICATIONS[spec["model"]])
        return app(weights=None, input_shape=(spec["image_size"], spec["image_size"], 3),
                   classes=1000, classifier_activation=None)
    import kerasnets

    model = kerasnets.create_model(
        spec["model"], num_classes=spec.get("num_classes", 1000),
        input_shape=(spec["image_size"],) * 2 + (spec.get("channels", 3),),
        **spec.get("options", {}))
    spec["macs"] = kerasnets.count_macs(model)  # per image, forward
    return model


def run_keras(spec):
    """Training and inference throughput of a Keras model through fit/predict."""
    import contextlib

    import keras

    from kerasnets.backends import keras_patches

    through_keras = spec.get("layer_calls_through_keras") or spec["kind"] == "keras_apps"
    with contextlib.ExitStack() as scopes:
        if through_keras:
            scopes.enter_context(keras_patches.layer_calls_through_keras())
        for option, turned_off in JAX_FORMS_OFF.items():
            if spec.get(option) and keras.backend.backend() == "jax":
                from kerasnets.backends import jax_cpu

                scopes.enter_context(getattr(jax_cpu, turned_off)())
        return _run_keras(spec)


# kerasnets' forms on JAX's CPU, each with the kerasnets.backends.jax_cpu context that
# traces a model without it (named by `python -m kerasnets.benchmarks.alternating
# --without`), and the spec option "jax_<context>" that does the same here
JAX_FORMS = {"depthwise_per_tap": "depthwise_gradient_by_xla",
             "max_pool_gradient": "max_pool_gradient_by_xla",
             "stored_operands": "operands_fused_by_xla",
             "strided_phases": "strided_input_gradient_by_xla",
             "group_blocks": "groups_one_by_one"}
JAX_FORMS_OFF = {f"jax_{context}": context for context in JAX_FORMS.values()}


def _run_keras(spec):
    import keras

    keras.utils.set_random_seed(0)
    built = time.perf_counter()
    model = _keras_model(spec)
    build_seconds = time.perf_counter() - built
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=spec.get("jit_compile", "auto"))
    x, y = _random_batch(spec)
    warmup, steps = spec["warmup"], spec["steps"]
    reps = warmup + steps
    xs, ys = np.concatenate([x] * reps), np.concatenate([y] * reps)
    timer = _StepTimer(warmup)
    model.fit(xs, ys, batch_size=len(x), epochs=1, shuffle=False, verbose=0,
              callbacks=[timer.callback])
    train_seconds = timer.seconds
    model.predict(x, batch_size=len(x), verbose=0)  # compile the inference graph
    xp = np.concatenate([x] * steps)
    start = time.perf_counter()
    model.predict(xp, batch_size=len(x), verbose=0)
    predict_seconds = time.perf_counter() - start
    return {"train_images_per_second": steps * len(x) / train_seconds,
            "predict_images_per_second": steps * len(x) / predict_seconds,
            "first_step_seconds": timer.first_step, "build_seconds": build_seconds,
            "peak_memory_mb": _peak_rss_mb(), "backend": keras.backend.backend()}


def run_torchvision(spec):
    """The same workload as a plain PyTorch eager training loop."""
    import torch
    import torchvision

    torch.manual_seed(0)
    channels_last = spec.get("memory_format") == "channels_last"
    model = torchvision.models.get_model(spec["model"], weights=None,
                                         num_classes=spec.get("num_classes", 1000))
    if spec.get("options", {}).get("small_input"):  # the same stem change as kerasnets'
        model.conv1 = torch.nn.Conv2d(spec.get("channels", 3), 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
    x, y = _random_batch(spec, channels_first=True)
    x, y = torch.from_numpy(x), torch.from_numpy(y).long()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        out = out.logits if hasattr(out, "logits") else out  # GoogLeNet in training mode
        loss_fn(out, y).backward()
        optimizer.step()

    model.train()
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(spec["warmup"] - 1):
        step()
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    train_seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        for _ in range(spec["steps"]):
            model(x)
        predict_seconds = time.perf_counter() - start
    n = spec["steps"] * len(x)
    return {"train_images_per_second": n / train_seconds,
            "predict_images_per_second": n / predict_seconds, "first_step_seconds": first,
            "peak_memory_mb": _peak_rss_mb(), "backend": "pytorch eager"}


def _fashion_mnist():
    from kerasnets.data import load_dataset

    return load_dataset("fashion_mnist", download=False)


def _pipeline_parts(spec, data):
    """The trainer's own preprocessing for ``spec['model']`` with its default recipe."""
    from kerasnets.training import resolve_config
    from kerasnets.training.prepare import prepare

    config = resolve_config({"model": spec["model"], "batch_size": spec["batch_size"],
                             "download": False, "pipeline": spec.get("pipeline", "tfdata")})
    prepared = prepare(config)
    return config, prepared


def run_pipeline(spec):
    """Images per second one input pipeline delivers, with no model attached."""
    from kerasnets.data import Preprocessor, make_pipeline

    config, prepared = _pipeline_parts(spec, None)
    data = prepared.data
    pipe = make_pipeline(spec["pipeline"], data.x_train, data.y_train, training=True,
                         num_classes=data.num_classes, batch_size=config.batch_size,
                         preprocessor=Preprocessor(prepared.preprocessing,
                                                   data.input_shape[:2], seed=0),
                         workers=config.workers)
    batches = spec["steps"]
    if spec["pipeline"] == "tfdata":
        iterator = iter(pipe)
        for _ in range(spec["warmup"]):
            next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
    else:  # as model.fit consumes a PyDataset: its workers run ahead
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

        iterator = iter(PyDatasetAdapter(pipe, shuffle=False).get_numpy_iterator())
        for _ in range(spec["warmup"]):
            next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
    seconds = time.perf_counter() - start
    return {"pipeline_images_per_second": batches * config.batch_size / seconds,
            "augmentation": {k: v for k, v in prepared.preprocessing.to_dict().items()
                             if k in ("crop_padding", "flip", "normalize", "channels")},
            "peak_memory_mb": _peak_rss_mb()}


def run_fit_pipeline(spec):
    """``model.fit`` throughput fed by a pipeline, or by the same tensors in memory."""
    import keras

    from kerasnets.data import Preprocessor, make_pipeline
    from kerasnets.data.pipelines import steps_per_epoch
    from kerasnets.training.compile import build_and_compile

    config, prepared = _pipeline_parts(spec, None)
    data = prepared.data
    steps = spec["warmup"] + spec["steps"]
    model = build_and_compile(prepared, steps_per_epoch(len(data.x_train), config.batch_size))
    preprocessor = Preprocessor(prepared.preprocessing, data.input_shape[:2], seed=0)
    common = dict(num_classes=data.num_classes, batch_size=config.batch_size,
                  preprocessor=preprocessor, training=True, workers=config.workers)
    if spec["pipeline"] == "memory":  # the batches, made beforehand
        pipe = make_pipeline("pydataset", data.x_train, data.y_train, **common)
        xs, ys = zip(*(pipe[i % len(pipe)] for i in range(steps)))
        feed = (np.concatenate(xs), np.concatenate(ys))
    else:
        feed = (make_pipeline(spec["pipeline"], data.x_train, data.y_train, **common),)
    timer = _StepTimer(spec["warmup"])
    if len(feed) == 2:
        model.fit(*feed, batch_size=config.batch_size, epochs=1, shuffle=False, verbose=0,
                  callbacks=[timer.callback])
    else:
        model.fit(feed[0], epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False,
                  callbacks=[timer.callback])
    seconds = timer.seconds
    return {"train_images_per_second": spec["steps"] * config.batch_size / seconds,
            "backend": keras.backend.backend(), "peak_memory_mb": _peak_rss_mb()}


def run_matmul(spec):
    """This machine's fp32 matmul rate (2048x2048) with one backend's own kernel: torch's
    (MKL), TensorFlow's or XLA's (jit). The best of them is the roof the GFLOP/s of the
    training rows are read against: on an AMD EPYC with AVX-512 torch's MKL ran at 189
    GFLOP/s where XLA's reached 450, below what TensorFlow's training reached (408)."""
    n, reps = spec.get("size", 2048), 20
    a, b = np.random.rand(n, n).astype("float32"), np.random.rand(n, n).astype("float32")
    backend = spec["backend"]
    if backend == "torch":
        import torch

        a, b = torch.from_numpy(a), torch.from_numpy(b)
        matmul, done, threads = (lambda: a @ b), (lambda out: out), torch.get_num_threads()
    elif backend == "jax":
        import jax

        a, b = jax.numpy.asarray(a), jax.numpy.asarray(b)
        step = jax.jit(lambda a, b: a @ b)
        matmul, done, threads = (lambda: step(a, b)), jax.block_until_ready, None
    else:
        import tensorflow as tf

        a, b = tf.constant(a), tf.constant(b)
        matmul, done, threads = (lambda: tf.matmul(a, b)), (lambda out: out.numpy()), None
    for _ in range(3):
        done(matmul())
    start = time.perf_counter()
    for _ in range(reps):
        done(matmul())
    return {"gflops": 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9,
            "backend": backend, "threads": threads}


RUNNERS = {"matmul": run_matmul, "kerasnets": run_keras, "keras_apps": run_keras, "torchvision": run_torchvision,
           "pipeline": run_pipeline, "fit_pipeline": run_fit_pipeline}


def use_jax_default_convolutions(spec, environ=None):
    """For keras.applications (always) and ``"ynnpack_convolutions": true``: XLA:CPU's
    convolutions as JAX's own default (YNNPACK fusions) instead of the XLA kernel that
    ``import kerasnets`` asks for (``kerasnets.backends.startup``). To be called before JAX
    starts its backend, which reads ``XLA_FLAGS`` then; a no-op where kerasnets adds no
    flag (another jaxlib or CPU). Returns whether it applies."""
    from kerasnets.backends import startup

    environ = os.environ if environ is None else environ
    applies = ((spec["kind"] == "keras_apps" or bool(spec.get("ynnpack_convolutions")))
               and "XLA_FLAGS" in startup.defaults(backend="jax"))
    if applies:
        flags = environ.get("XLA_FLAGS", "").replace(startup.XLA_OWN_CONVOLUTIONS, "")
        environ["XLA_FLAGS"] = " ".join(flags.split() + [startup.YNN_CONVOLUTIONS])
    return applies


def main(argv=None):
    if argv is None:  # a worker process: JAX's steps with huge pages, as train.py runs them
        from kerasnets.backends import startup

        startup.restart_with_huge_pages()
    spec = json.loads((argv or sys.argv[1:])[0])
    use_jax_default_convolutions(spec)  # JAX has not started: only kerasnets is imported
    if spec["backend"] == "torch" and spec["kind"] in ("torchvision", "matmul"):
        import torch  # noqa: F401  (torch first: see tests/conftest.py on import order)
    result = RUNNERS[spec["kind"]](spec)
    print("RESULT " + json.dumps({**spec, **result}), flush=True)


if __name__ == "__main__":
    main()
