"""Data-parallel training through the engines Keras already speaks.

This is the one place that holds backend-specific distribution code:

* JAX: ``keras.distribution.DataParallel`` over ``jax.devices()``, set before
  the model is built. Several hosts: ``jax.distributed.initialize`` (what
  ``keras.distribution.initialize`` calls) from ``--coordinator``,
  ``--num-processes``, ``--process-id`` or Keras' own environment variables
  ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` / ``_NUM_PROCESSES`` / ``_PROCESS_ID``.
* TensorFlow: ``tf.distribute.MirroredStrategy`` over the local devices; several
  hosts: ``tf.distribute.MultiWorkerMirroredStrategy`` from ``TF_CONFIG``.
* torch: Keras has no distribution API for torch (there is no
  ``keras/src/backend/torch/distribution_lib.py``): a clear error.

``--batch-size`` is the global batch. Each process feeds its own shard of the
data (``Distribution.shard``); evaluation sets are padded to whole global
batches with zero-weight examples, so every replica gets full batches and the
accuracies count each real example exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

import keras

from kerasnets.backends import devices, keras_patches
from kerasnets.training.errors import TrainingError

MODES = ("none", "data")
# The engines' own timeouts come this long after ours: JAX's ends the process with a
# fatal log instead of an error we could explain.
ENGINE_GRACE = 30
SUPPORTED = ("jax", "tensorflow")


class DistributionError(TrainingError):
    """A distributed run is misconfigured; the message says what to change."""


@dataclass
class Shard:
    """What one process feeds: every ``count``-th example from ``index``, in batches of
    ``batch`` (the process' part of the global batch, or per replica on TF multi-worker)."""

    index: int = 0
    count: int = 1
    batch: int = 0


@dataclass
class Distribution:
    mode: str = "none"
    backend: str = ""
    replicas: int = 1  # devices training in sync, over all hosts
    num_processes: int = 1
    process_id: int = 0
    devices: list = field(default_factory=list)
    strategy: object = None  # the tf.distribute strategy (TensorFlow)
    jax_distribution: object = None  # the keras.distribution.DataParallel (JAX)

    @property
    def active(self) -> bool:
        return self.mode != "none"

    @property
    def is_chief(self) -> bool:
        """Only the chief (process 0) writes the run directory."""
        return self.process_id == 0

    @property
    def multi_worker_tf(self) -> bool:
        return self.strategy is not None and self.num_processes > 1

    def describe(self) -> dict:
        return {"mode": self.mode, "replicas": self.replicas,
                "num_processes": self.num_processes, "process_id": self.process_id,
                "devices": [str(d) for d in self.devices]}

    def check_batch_size(self, batch_size: int):
        if batch_size % self.replicas:
            lower = batch_size - batch_size % self.replicas
            raise DistributionError(
                f"--batch-size {batch_size} (the global batch) is not divisible by the "
                f"{self.replicas} replicas of this run; use --batch-size "
                f"{lower or self.replicas} or {lower + self.replicas}.")

    def shard(self, batch_size: int) -> Shard:
        if self.multi_worker_tf:  # distribute_datasets_from_function wants per-replica batches
            return Shard(self.process_id, self.num_processes, batch_size // self.replicas)
        return Shard(self.process_id, self.num_processes, batch_size // self.num_processes)

    def scope(self):
        """Build, compile, fit and evaluate inside this."""
        if self.strategy is not None:
            return self.strategy.scope()
        if self.jax_distribution is not None:
            return self.jax_distribution.scope()
        return contextlib.nullcontext()

    def dataset(self, data):
        """What ``model.fit`` is given: on TF multi-worker, each worker's own shard as a
        distributed dataset (so TensorFlow does not shard it again)."""
        if not self.multi_worker_tf:
            return data
        return self.strategy.distribute_datasets_from_function(lambda context: data)

    def keras_patches(self, model):
        """Wrap ``model.fit``/``evaluate`` in this: the patches of Keras this engine needs."""
        if self.multi_worker_tf:
            return keras_patches.multi_worker_mirrored(model, self.strategy)
        return contextlib.nullcontext()


NONE = Distribution()


def simulate_cpu_devices(count: int, backend: str):
    """Split the CPU into ``count`` devices (to try data parallelism on one machine).
    Must run before the backend touches a device; ``backend`` is one of ``SUPPORTED``."""
    if backend == "jax":
        if devices.jax_started():
            raise DistributionError(
                "--cpu-devices must be set before JAX starts; run a fresh process, or set "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={count} yourself.")
        # Several devices on few cores: with Eigen's shared thread pool, the threads of
        # an all-reduce can wait on each other for ever (seen at 4 devices on 2 cores);
        # one thread per device cannot.
        flag = f"--xla_force_host_platform_device_count={count} --xla_cpu_multi_thread_eigen=false"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    elif backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError as error:
            raise DistributionError(f"--cpu-devices {count}: TensorFlow has already started "
                                    f"({error}); run a fresh process.") from None


def _unsupported(backend):
    return (f"--distribute data is not available on the {backend} backend: Keras "
            f"{keras.__version__} has no distribution API for it. Use KERAS_BACKEND=jax "
            f"(keras.distribution.DataParallel) or KERAS_BACKEND=tensorflow "
            f"(tf.distribute), or train without --distribute.")


def setup(config) -> Distribution:
    """The :class:`Distribution` for ``config`` (``--distribute`` and its companions);
    starts the engine, joining the other hosts when there are several."""
    backend = keras.backend.backend()
    if config.distribute == "none":
        if config.cpu_devices or config.coordinator or config.num_processes:
            raise DistributionError("--cpu-devices, --coordinator and --num-processes "
                                    "need --distribute data.")
        return NONE
    if backend not in SUPPORTED:
        raise DistributionError(_unsupported(backend))
    if config.cpu_devices:
        simulate_cpu_devices(config.cpu_devices, backend)
    with deadline(config.distribute_timeout, "joining the other processes"):
        if backend == "jax":
            return _setup_jax(config)
        return _setup_tensorflow(config)


def _setup_jax(config) -> Distribution:
    import jax

    env = os.environ
    coordinator = config.coordinator or env.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")
    num_processes = config.num_processes or _int_env("KERAS_DISTRIBUTION_NUM_PROCESSES")
    process_id = config.process_id if config.process_id is not None else \
        _int_env("KERAS_DISTRIBUTION_PROCESS_ID")
    if num_processes and num_processes > 1:
        if not coordinator or process_id is None:
            raise DistributionError(
                f"--num-processes {num_processes} needs --coordinator HOST:PORT (process 0's "
                f"address, the same on every host) and --process-id 0..{num_processes - 1}.")
        if not 0 <= process_id < num_processes:
            raise DistributionError(f"--process-id {process_id} must be in "
                                    f"0..{num_processes - 1}.")
        coordinator = coordinator.split(",")[0]  # Keras' list of job addresses: first leads
        try:
            # keras.distribution.initialize() does exactly this, minus the timeout.
            jax.distributed.initialize(coordinator, num_processes, process_id,
                                       initialization_timeout=int(config.distribute_timeout) + ENGINE_GRACE)
        except Exception as error:  # noqa: BLE001 - JAX raises XlaRuntimeError/RuntimeError
            raise DistributionError(
                f"Process {process_id} of {num_processes} could not join the coordinator at "
                f"{coordinator} within {config.distribute_timeout:.0f} s: "
                f"{str(error).splitlines()[0][:300]}. Start every process with the same "
                f"--coordinator and --num-processes, and check the address and port are "
                f"reachable from this host.") from None
    devices = jax.devices()
    distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    return Distribution("data", "jax", len(devices), jax.process_count(), jax.process_index(),
                        devices, jax_distribution=distribution)


def _setup_tensorflow(config) -> Distribution:
    import tensorflow as tf

    if config.coordinator or config.num_processes:
        raise DistributionError("On TensorFlow, several hosts are described by the TF_CONFIG "
                                "environment variable, not --coordinator/--num-processes.")
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = len(tf_config.get("cluster", {}).get("worker", [])) + \
        len(tf_config.get("cluster", {}).get("chief", []))
    if workers > 1:
        if config.pipeline != "tfdata":
            raise DistributionError("TensorFlow multi-worker training needs --pipeline tfdata "
                                    "(each worker's shard goes in as a tf.data dataset).")
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=config.distribute_timeout + ENGINE_GRACE)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        resolver = strategy.cluster_resolver
        task_type, task_id = resolver.task_type, resolver.task_id
        # The chief is "chief" when there is one, else worker 0; workers follow it.
        has_chief = "chief" in tf_config.get("cluster", {})
        process_id = 0 if task_type == "chief" else task_id + int(has_chief)
        devices = strategy.extended.worker_devices
        return Distribution("data", "tensorflow", strategy.num_replicas_in_sync, workers,
                            process_id, list(devices), strategy=strategy)
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    return Distribution("data", "tensorflow", strategy.num_replicas_in_sync, 1, 0, devices,
                        strategy=strategy)


def _int_env(name):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


_WATCHDOG = """
import os, signal, sys, time
parent, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
end = time.time() + seconds
while time.time() < end:
    time.sleep(0.2)
    if os.getppid() != parent:  # the parent is gone: nothing to watch
        sys.exit(0)
sys.stderr.write(message + "\\n")
sys.stderr.flush()
os.kill(parent, signal.SIGKILL)
"""


@contextlib.contextmanager
def deadline(seconds, what):
    """Fail (never hang) when ``what`` takes longer than ``seconds``, with a message that
    says what to check: a missing peer blocks the engines for their own timeout and
    then ends the process with a fatal log (JAX) or blocks in C++ for ever (TF).

    The watchdog is a separate process: a thread could not run while the engine
    holds the interpreter lock."""
    message = (f"kerasnets: error: {what} took more than {seconds:.0f} s "
               f"(--distribute-timeout); is every process started, with the same cluster "
               f"settings, and can the hosts reach each other?")
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()),
                                 str(seconds), message])
    try:
        yield
    finally:
        watchdog.kill()
        watchdog.wait()
