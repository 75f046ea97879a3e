import os
import sys

# One BLAS thread per test process: with pytest -n 2 on two cores, OpenBLAS's own threads
# oversubscribe the CPU and small GEMMs slow down 10-100x (measured: a 2048x64x192 sgemm
# took 35 ms with default threads under load, 3 ms with one). Set before NumPy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _seed():
    import ember
    ember.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def threads():
    """``ember.set_num_threads`` for the test; the thread count is restored afterwards."""
    import ember
    before = ember.get_num_threads()
    yield ember.set_num_threads
    ember.set_num_threads(before)
