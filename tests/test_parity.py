"""Across backends: the same weights give the same answers on TensorFlow, JAX and torch.

Each backend runs in its own process (the backend is fixed at import), so one
module-scoped run drives all three for every model; each model is then its own
test. It runs in the TensorFlow pass of CI only, not three times.
"""

import keras
import pytest

import kerasnets
from kerasnets.interop.parity import TOLERANCES, format_report, run_parity

pytestmark = [
    pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                       reason="drives all three backends itself; runs once, in the TF pass"),
    pytest.mark.xdist_group("parity"),  # one worker computes the report once
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    report = run_parity(tmp_path_factory.mktemp("parity"))
    print(format_report(report))
    return report


@pytest.mark.parametrize("name", kerasnets.list_models())
def test_model_agrees_across_backends(report, name):
    worst = report[name]
    failures = {check: value for check, value in worst.items() if value > TOLERANCES[check]}
    assert not failures, f"{name}: {failures} (tolerances {TOLERANCES})"
