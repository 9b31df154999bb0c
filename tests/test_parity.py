"""Across backends: the same weights give the same answers on TensorFlow, JAX and torch.

Each backend runs in its own process (the backend is fixed at import), so one
run drives all three for every model. It runs in the TensorFlow pass of CI only,
not three times.
"""

import keras
import pytest

import kerasnets
from kerasnets.interop.parity import TOLERANCES, format_report, run_parity

pytestmark = [
    pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                       reason="drives all three backends itself; runs once, in the TF pass"),
]


def test_every_model_agrees_across_backends(tmp_path):
    """One test, so that exactly one pytest-xdist worker computes the report (a module
    fixture behind per-model tests was computed by both workers under --dist loadgroup)."""
    report = run_parity(tmp_path / "parity")
    print(format_report(report))
    assert set(report) == set(kerasnets.list_models())
    failures = {name: {check: value for check, value in worst.items()
                       if value > TOLERANCES[check]}
                for name, worst in report.items()}
    failures = {name: checks for name, checks in failures.items() if checks}
    assert not failures, f"beyond the tolerances {TOLERANCES}: {failures}"
