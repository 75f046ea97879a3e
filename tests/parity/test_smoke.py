import numpy as np
import pytest

from .helpers import check, gradcheck


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mul_add_broadcast(dtype):
    check(lambda m, a, b: (a * b + a).sum(-1), [(3, 4), (4,)], dtype)


def test_matmul_noncontig():
    check(lambda m, a, b: a @ b, [(3, 4), (4, 5)], noncontig=True)


def test_gradcheck_tanh_chain():
    gradcheck(lambda m, a: (a.tanh() * a.exp()).sum(), [(3,)], gradgrad=True)
