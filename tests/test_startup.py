"""Settings kerasnets makes before a backend starts (kerasnets/backends/startup.py)."""

import os
import platform

import keras
import pytest

from kerasnets.backends import startup


OWN = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def test_startup_sets_only_what_the_user_has_not():
    environ = {}
    assert startup.apply(environ, modules={}, machine="x86_64", jaxlib="0.10.2",
                         backend="jax") == {
        "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1", "XLA_FLAGS": OWN}
    assert environ["TF_ENABLE_ONEDNN_OPTS"] == "1"

    mine = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    startup.apply(mine, modules={}, machine="x86_64", jaxlib=None)
    assert mine == {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_startup_adds_its_xla_flag_to_the_users_unless_they_name_it():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    startup.apply(environ, modules={}, machine="x86_64", jaxlib="0.10.2", backend="jax")
    assert environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=4 " + OWN

    theirs = "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
    environ = {"XLA_FLAGS": theirs}
    assert "XLA_FLAGS" not in startup.apply(environ, modules={}, machine="x86_64",
                                            jaxlib="0.10.2", backend="jax")
    assert environ["XLA_FLAGS"] == theirs  # JAX's own default, asked for: kept


def test_startup_adds_no_xla_flag_an_unmeasured_jaxlib_or_another_backend_may_not_know():
    """XLA stops the process on an unknown flag: only JAX with the jaxlib releases it was
    measured with gets it; none without jaxlib, off x86, before the backend is known, or on
    TensorFlow (whose own XLA reads XLA_FLAGS) and torch."""
    for jaxlib, machine, backend in (
            ("0.9.2", "x86_64", "jax"), ("0.11.0", "x86_64", "jax"), (None, "x86_64", "jax"),
            ("0.10.2", "aarch64", "jax"), ("0.10.2", "x86_64", None),
            ("0.10.2", "x86_64", "tensorflow"), ("0.10.2", "x86_64", "torch")):
        environ = {}
        startup.apply(environ, modules={}, machine=machine, jaxlib=jaxlib, backend=backend)
        assert "XLA_FLAGS" not in environ, (jaxlib, machine, backend)


def test_startup_leaves_other_cpus_and_a_started_backend_alone():
    environ = {}
    startup.apply(environ, modules={}, machine="aarch64")
    assert "TF_ENABLE_ONEDNN_OPTS" not in environ  # measured on x86 only
    late = {}
    assert "TF_ENABLE_ONEDNN_OPTS" not in startup.apply(
        late, modules={"tensorflow": object()}, machine="x86_64", jaxlib=None)
    assert late == {}  # TensorFlow read its settings at import: too late to set them

    class Bridge:  # jax._src.xla_bridge once JAX has started its CPU backend
        _backends = {"cpu": object()}

    started = {}
    startup.apply(started, modules={"jax._src.xla_bridge": Bridge}, machine="x86_64",
                  jaxlib="0.10.2", backend="jax")
    assert "XLA_FLAGS" not in started  # JAX read XLA_FLAGS when it started
    Bridge._backends = {}  # imported, not started: XLA_FLAGS is still read later
    startup.apply(started, modules={"jax._src.xla_bridge": Bridge}, machine="x86_64",
                  jaxlib="0.10.2", backend="jax")
    assert started["XLA_FLAGS"] == OWN


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's XLA:CPU")
def test_jax_convolutions_run_xla_own_kernel_after_import_kerasnets():
    """conftest imports kerasnets before JAX starts, as scripts/ do, so the suite runs JAX
    as users get it: a convolution compiles to XLA:CPU's own kernel, not a YNNPACK fusion
    (which JAX 0.10.2 picks for one this size by default)."""
    import jax
    from jax import lax

    if startup.YNN_FUSION_FLAG not in os.environ.get("XLA_FLAGS", ""):
        pytest.skip("not an x86 CPU with a jaxlib kerasnets measured the flag with")
    if startup.XLA_OWN_CONVOLUTIONS not in os.environ["XLA_FLAGS"]:
        pytest.skip("XLA_FLAGS names the flag itself (the user's choice)")
    x, k = jax.numpy.ones((8, 16, 16, 64)), jax.numpy.ones((3, 3, 64, 64))
    conv = jax.jit(lambda x, k: lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    compiled = conv.lower(x, k).compile().as_text()
    assert " convolution(" in compiled and "ynn_fusion" not in compiled


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's own setting")
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 only")
def test_tensorflow_runs_its_onednn_kernels_after_import_kerasnets():
    """conftest imports kerasnets before Keras, as scripts/train.py does, so the suite
    runs TensorFlow as users get it: with oneDNN's CPU kernels on."""
    from tensorflow.python.util import _pywrap_util_port

    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        pytest.skip("TF_ENABLE_ONEDNN_OPTS=0 exported by the user")
    assert _pywrap_util_port.IsMklEnabled()


def test_commands_restart_with_huge_pages_on_jax_with_glibc_only():
    """glibc reads GLIBC_TUNABLES only at a process's start: kerasnets' commands restart
    themselves with glibc.malloc.hugetlb=1 on JAX, on glibc >= 2.35, where transparent huge
    pages are on; a hugetlb value of the user's wins."""
    glibc = ("glibc", "2.36")
    jax_env = {"KERAS_BACKEND": "jax"}
    assert startup.huge_pages_tunables(jax_env, glibc, "madvise") == "glibc.malloc.hugetlb=1"
    assert startup.huge_pages_tunables(jax_env, glibc, "always") == "glibc.malloc.hugetlb=1"
    assert startup.huge_pages_tunables(
        {**jax_env, "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, glibc, "madvise") == (
        "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")
    for environ, libc, thp in [
            ({**jax_env, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, glibc, "madvise"),
            (jax_env, glibc, "never"), (jax_env, glibc, None),  # THP off or no /sys
            (jax_env, ("glibc", "2.34"), "madvise"), (jax_env, ("", ""), "madvise"),  # musl
            ({"KERAS_BACKEND": "torch"}, glibc, "madvise"),
            ({"KERAS_BACKEND": "tensorflow"}, glibc, "madvise")]:
        assert startup.huge_pages_tunables(environ, libc, thp) is None, (environ, libc, thp)


def test_configured_backend_is_read_as_keras_reads_it(tmp_path):
    (tmp_path / "keras.json").write_text('{"backend": "jax", "floatx": "float32"}')
    assert startup._configured_backend({"KERAS_HOME": str(tmp_path)}) == "jax"
    assert startup._configured_backend({"KERAS_HOME": str(tmp_path),
                                        "KERAS_BACKEND": "torch"}) == "torch"
    assert startup._configured_backend({"KERAS_HOME": str(tmp_path / "none")}) == "tensorflow"


def test_restart_runs_the_same_command_with_the_tunable(monkeypatch):
    import sys

    calls = []
    monkeypatch.setattr(startup, "huge_pages_tunables", lambda: "glibc.malloc.hugetlb=1")
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-m", "kerasnets.benchmarks.x", "{}"])
    startup.restart_with_huge_pages(execve=lambda *args: calls.append(args))
    [(path, argv, env)] = calls
    assert path == sys.executable and argv == [sys.executable, "-m",
                                               "kerasnets.benchmarks.x", "{}"]
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    monkeypatch.setattr(startup, "huge_pages_tunables", lambda: None)
    startup.restart_with_huge_pages(execve=lambda *args: calls.append(args))
    assert len(calls) == 1  # nothing to add: no restart


def test_a_command_restarted_once_runs_with_the_tunable(tmp_path):
    """End to end, in a fresh process: the restart happens once and the code after it
    runs with the tunable in its environment."""
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "jax"}
    env.pop("GLIBC_TUNABLES", None)
    if startup.huge_pages_tunables(env) is None:
        pytest.skip("no glibc >= 2.35 with transparent huge pages here")
    marker = tmp_path / "runs"
    code = ("import sys; sys.path.insert(0, 'kerasnets/backends'); import startup; "
            f"open({str(marker)!r}, 'a').write('x'); startup.restart_with_huge_pages(); "
            "import os; print(os.environ['GLIBC_TUNABLES'])")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=root,
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "glibc.malloc.hugetlb=1"
    assert marker.read_text() == "xx"  # the code before the restart ran twice, once each
