"""Across backends: the same weights give the same answers on TensorFlow, JAX and torch.

Each backend runs in its own process (the backend is fixed at import), so this one
test drives all three; it runs in the TensorFlow pass of CI only, not three times.
"""

import keras
import pytest

from kerasnets.interop.parity import TOLERANCES, format_report, run_parity


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="drives all three backends itself; runs once, in the TF pass")
def test_every_model_agrees_across_backends(tmp_path):
    report = run_parity(tmp_path)
    print(format_report(report))
    import kerasnets

    assert set(report) == set(kerasnets.list_models())
    failures = {(model, check): value for model, worst in report.items()
                for check, value in worst.items() if value > TOLERANCES[check]}
    assert not failures, format_report(report)
