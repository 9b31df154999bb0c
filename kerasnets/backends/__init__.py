"""The one place that holds backend-specific code and patches of Keras internals.

Model code is written once with ``keras.layers`` and ``keras.ops``; what must differ
per backend (or per device) lives here, behind plain functions of Keras tensors, so
that weights and saved models never depend on the backend:

* :mod:`kerasnets.backends.kernels`: faster grouped / depthwise convolutions where a
  backend's own kernel is slow, chosen by backend *and* device;
* :mod:`kerasnets.backends.torch_cpu`: torch's own convolution and pooling kernels on
  the channels_last view of Keras' NHWC tensors, without the copies Keras' torch backend
  makes, and convolution kernels stored in torch's memory order (chosen by
  :mod:`~kerasnets.backends.kernels` on torch's CPU);
* :mod:`kerasnets.backends.jax_cpu`: an identity XLA cannot see through, around the
  convolutions JAX's CPU runs with XLA's own kernel, so that their gradients' transposes
  read stored tensors instead of recomputing the layers before them; depthwise
  convolutions as shifted multiply-adds, whose kernel gradient is one tap per loop
  iteration; max-pooling whose gradient goes to each window's first maximum (all
  chosen by :mod:`~kerasnets.backends.kernels`);
* :mod:`kerasnets.backends.padding`: Keras' "same" padding and output sizes, shared by
  the kernels of every backend;
* :mod:`kerasnets.backends.execution`: running a model outside ``model.fit``
  (inference, training-mode outputs, gradients; one jitted call on JAX);
* :mod:`kerasnets.backends.keras_patches`: every patch of Keras internals, each
  named with the upstream issue it works around, applied only to the Keras
  versions it was written for, and undone after use (two, which change no result, are
  installed for the process: optimizer slots in their variable's torch strides, and
  torch's Functional models calling their layers without ``Layer.__call__``'s
  bookkeeping where it would do nothing);
* :mod:`kerasnets.backends.tf_graph`: running Keras preprocessing layers as a
  TensorFlow graph for the input pipelines when TensorFlow is installed;
* :mod:`kerasnets.backends.devices`: which backend, and which kind of device, a
  computation runs on;
* :mod:`kerasnets.backends.startup`: environment variables a backend reads once, when
  it starts (TensorFlow's oneDNN kernels; XLA:CPU's own convolution kernel for JAX instead
  of YNNPACK's), set by ``import kerasnets`` before Keras imports TensorFlow and before
  JAX starts.

Nothing else in ``kerasnets/`` imports ``jax``, ``torch`` or ``tensorflow`` for
computation (tf.data is used as a data library by the input pipelines).
"""

BACKENDS = ("tensorflow", "jax", "torch")
