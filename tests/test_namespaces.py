"""Namespaces that are not built yet raise NotImplementedError naming the feature; the
testing helper behaves like PyTorch's."""

import numpy as np
import pytest

import ember


@pytest.mark.parametrize("call", [
    lambda: ember.quantization.get_default_float_to_quantized_operator_mappings(),
])
def test_not_yet_features_raise(call):
    with pytest.raises(NotImplementedError, match="not implemented"):
        call()


def test_distributed_available_with_mpi4py_and_no_cuda():
    import importlib.util
    assert ember.distributed.is_available() is (importlib.util.find_spec("mpi4py") is not None)
    assert ember.cuda.is_available() is False


def test_assert_close():
    ember.testing.assert_close(ember.tensor([1.0, 2.0]), ember.tensor([1.0, 2.0 + 1e-7]))
    with pytest.raises(AssertionError, match="not close"):
        ember.testing.assert_close(ember.tensor([1.0, 2.0]), ember.tensor([1.0, 2.1]))
    with pytest.raises(AssertionError, match="dtype"):
        ember.testing.assert_close(ember.tensor([1.0]), ember.tensor([1.0], dtype=ember.float64))
    with pytest.raises(AssertionError, match="shape"):
        ember.testing.assert_close(ember.zeros(2), ember.zeros(3))
    ember.testing.assert_close({"a": [ember.ones(2)]}, {"a": [np.ones(2, np.float32)]},
                               check_dtype=False)


def test_import_loads_no_optional_heavyweights():
    # SciPy, Matplotlib, PIL and torch load on first use only (SciPy alone took 0.2 s)
    import subprocess
    import sys
    code = ("import sys, ember; print(sorted(m for m in ('scipy', 'matplotlib', 'PIL', 'torch',"
            " 'tqdm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"
