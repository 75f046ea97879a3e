"""Parity of the elementwise op family with PyTorch: values, gradients, dtypes, edge shapes."""

import numpy as np
import pytest

from .helpers import check, gradcheck, make_arrays

torch = pytest.importorskip("torch")
import ember  # noqa: E402

FLOATS = [np.float32, np.float64]
# shapes each op sees: plain, broadcast-free 0-d, empty, one more batch dim
UNARY_SHAPES = [(3, 4), (), (0, 3), (2, 1, 3)]

# name, low, high, smooth (gradgradcheck); domains where each op is defined and not flat
UNARY = [
    ("neg", -2, 2, True), ("abs", 0.1, 2, True), ("sign", -2, 2, False), ("exp", -2, 2, True),
    ("exp2", -2, 2, True), ("expm1", -2, 2, True), ("log", 0.1, 3, True),
    ("log2", 0.1, 3, True), ("log10", 0.1, 3, True), ("log1p", -0.5, 3, True),
    ("sqrt", 0.1, 3, True), ("rsqrt", 0.2, 3, True), ("square", -2, 2, True),
    ("reciprocal", 0.5, 2, True), ("sin", -3, 3, True), ("cos", -3, 3, True),
    ("tan", -1, 1, True), ("asin", -0.9, 0.9, True), ("acos", -0.9, 0.9, True),
    ("atan", -2, 2, True), ("sinh", -2, 2, True), ("cosh", -2, 2, True),
    ("tanh", -2, 2, True), ("asinh", -2, 2, True), ("acosh", 1.2, 3, True),
    ("atanh", -0.9, 0.9, True), ("sigmoid", -3, 3, True), ("logit", 0.1, 0.9, True),
    ("erf", -2, 2, True), ("erfc", -2, 2, True), ("erfinv", -0.9, 0.9, True),
    ("relu", -2, 2, False), ("floor", -3, 3, False), ("ceil", -3, 3, False),
    ("round", -3, 3, False), ("trunc", -3, 3, False), ("frac", -3, 3, False),
    ("nan_to_num", -2, 2, False), ("positive", -2, 2, False), ("fix", -3, 3, False),
    ("arcsin", -0.9, 0.9, True), ("arctanh", -0.9, 0.9, True), ("negative", -2, 2, True),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", UNARY_SHAPES)
@pytest.mark.parametrize("name,low,high,smooth", UNARY)
def test_unary(name, low, high, smooth, shape, dtype):
    check(lambda m, a: getattr(m, name)(a), [shape], dtype, low=low, high=high)


@pytest.mark.parametrize("name,low,high,smooth", UNARY)
def test_unary_method_noncontig(name, low, high, smooth):
    check(lambda m, a: getattr(a, name)(), [(3, 4)], low=low, high=high, noncontig=True)


@pytest.mark.parametrize("name,low,high,smooth", [u for u in UNARY if u[3]])
def test_unary_gradcheck(name, low, high, smooth):
    gradcheck(lambda m, a: getattr(m, name)(a), [(2, 3)], low=low, high=high, gradgrad=True)


# unary math on integer / bool inputs promotes to the default float dtype
@pytest.mark.parametrize("name", ["exp", "log1p", "sqrt", "sin", "tanh", "sigmoid", "erf",
                                  "rsqrt", "reciprocal", "atan", "expm1", "exp2", "log2"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_unary_int_promotes(name, dtype):
    check(lambda m, a: getattr(m, name)(a), [(5,)], dtype, grad=False, low=0, high=3)


@pytest.mark.parametrize("name", ["neg", "abs", "sign", "square", "floor", "ceil", "round",
                                  "trunc", "relu"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint8])
def test_unary_int_keeps_dtype(name, dtype):
    check(lambda m, a: getattr(m, name)(a), [(5,)], dtype, grad=False, low=0 if dtype ==
          np.uint8 else -3, high=3)


# ---------------------------------------------------------------------- binary
BINARY = [
    ("add", -2, 2), ("sub", -2, 2), ("mul", -2, 2), ("div", 0.5, 2), ("true_divide", 0.5, 2),
    ("floor_divide", 0.5, 3), ("remainder", 0.5, 3), ("fmod", 0.5, 3), ("pow", 0.5, 2),
    ("atan2", -2, 2), ("maximum", -2, 2), ("minimum", -2, 2), ("hypot", -2, 2),
    ("logaddexp", -2, 2), ("logaddexp2", -2, 2), ("subtract", -2, 2), ("multiply", -2, 2),
    ("divide", 0.5, 2), ("arctan2", -2, 2),
]
BINARY_SHAPES = [
    [(3, 4), (3, 4)], [(3, 4), (4,)], [(2, 1, 4), (3, 1)], [(), (3,)], [(3,), ()], [(), ()],
    [(0, 3), (3,)], [(2, 0), (1, 0)],
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shapes", BINARY_SHAPES)
@pytest.mark.parametrize("name,low,high", BINARY)
def test_binary(name, low, high, shapes, dtype):
    # PyTorch has no derivative for floor_divide (its backward raises); compare values only
    check(lambda m, a, b: getattr(m, name)(a, b), shapes, dtype, low=low, high=high,
          grad=name != "floor_divide")


@pytest.mark.parametrize("name,low,high", BINARY)
def test_binary_method_noncontig(name, low, high):
    check(lambda m, a, b: getattr(a, name)(b), [(3, 4), (3, 4)], low=low, high=high,
          noncontig=True, grad=name != "floor_divide")


@pytest.mark.parametrize("name,low,high", [b for b in BINARY if b[0] not in (
    "floor_divide", "maximum", "minimum")])
def test_binary_gradcheck(name, low, high):
    gradcheck(lambda m, a, b: getattr(m, name)(a, b), [(2, 3), (3,)], low=low, high=high,
              gradgrad=True)


@pytest.mark.parametrize("name,low,high", [("add", -2, 2), ("sub", -2, 2), ("mul", -2, 2),
                                           ("div", 0.5, 2), ("pow", 0.5, 2),
                                           ("remainder", 0.5, 3), ("fmod", 0.5, 3),
                                           ("floor_divide", 0.5, 3), ("atan2", -2, 2),
                                           ("maximum", -2, 2), ("minimum", -2, 2)])
@pytest.mark.parametrize("scalar", [3, 1.5, -2])
def test_binary_scalar(name, low, high, scalar):
    if name in ("pow",) and scalar == -2:
        scalar = -2.0
    fn = getattr(torch, name)
    try:
        fn(torch.ones(2), scalar)
    except TypeError:
        pytest.skip(f"torch.{name} takes no python scalar")
    check(lambda m, a: getattr(m, name)(a, scalar), [(3, 4)], low=low, high=high,
          grad=name != "floor_divide")


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.int8, np.uint8])
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "floor_divide", "remainder",
                                  "fmod", "maximum", "minimum", "true_divide"])
def test_binary_int(name, dtype):
    a, b = make_arrays([(3, 4), (4,)], dtype, 1, 9)
    check(lambda m, x, y: getattr(m, name)(x, y), None, dtype, grad=False, arrays=[a, b])
    if name in ("maximum", "minimum"):
        return  # tensor-only in PyTorch
    check(lambda m, x: getattr(m, name)(x, 3), None, dtype, grad=False, arrays=[a])
    check(lambda m, x: getattr(m, name)(x, 2.5), None, dtype, grad=False, arrays=[a])


@pytest.mark.parametrize("mode", [None, "trunc", "floor"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_div_rounding_mode(mode, dtype):
    a, b = make_arrays([(3, 4), (4,)], dtype, -7, 7, seed=3)
    b[b == 0] = 3
    check(lambda m, x, y: m.div(x, y, rounding_mode=mode), None, dtype, arrays=[a, b])
    check(lambda m, x: m.div(x, -2, rounding_mode=mode), None, dtype, arrays=[a])
    check(lambda m, x: x.div(2.5, rounding_mode=mode), None, dtype, arrays=[a])


@pytest.mark.parametrize("dtype", FLOATS + [np.int64])
def test_remainder_fmod_signs(dtype):
    a = np.array([-7, -3, 0, 3, 7, 5], dtype)
    b = np.array([2, -2, 3, -3, -4, 5], dtype)
    for name in ("remainder", "fmod", "floor_divide"):
        grad = name != "floor_divide"
        check(lambda m, x, y: getattr(m, name)(x, y), None, dtype, arrays=[a, b], grad=grad)
        check(lambda m, x: getattr(m, name)(x, -3), None, dtype, arrays=[a], grad=grad)


@pytest.mark.parametrize("dtype", FLOATS)
def test_pow_variants(dtype):
    check(lambda m, a: m.pow(a, 3), [(3, 4)], dtype)
    check(lambda m, a: m.pow(a, 2), [(3, 4)], dtype)
    check(lambda m, a: m.pow(a, 0), [(3, 4)], dtype)
    check(lambda m, a: m.pow(a, -1.5), [(3, 4)], dtype, low=0.5, high=2)
    check(lambda m, a: m.pow(a, 0.5), [(3, 4)], dtype, low=0.5, high=2)
    check(lambda m, a: m.pow(2.5, a), [(3, 4)], dtype)
    check(lambda m, a: m.pow(2, a), [(3, 4)], dtype)
    check(lambda m, a: a ** 3, [(3, 4)], dtype)
    check(lambda m, a: 1.7 ** a, [(3, 4)], dtype)
    check(lambda m, a, b: a ** b, [(3, 4), (4,)], dtype, low=0.5, high=2)
    check(lambda m, a, b: m.pow(a, b), [(3,), ()], dtype, low=0.5, high=2)
    # zeros in the base: gradient masked like PyTorch's
    z = np.array([0.0, 1.0, 2.0], dtype)
    e = np.array([2.0, 0.0, 1.5], dtype)
    check(lambda m, a, b: m.pow(a, b), None, dtype, arrays=[z, e])
    check(lambda m, a: m.pow(a, 2.0), None, dtype, arrays=[z])
    check(lambda m, a: m.pow(0.0, a), None, dtype, arrays=[e])


def test_pow_int():
    a = np.array([1, 2, 3, -2], np.int64)
    check(lambda m, x: m.pow(x, 2), None, np.int64, arrays=[a])
    check(lambda m, x: m.pow(x, 0.5), None, np.int64, arrays=[np.abs(a)])
    check(lambda m, x: m.pow(2, x), None, np.int64, arrays=[np.abs(a)])
    check(lambda m, x: m.pow(x, x), None, np.int64, arrays=[np.abs(a)])
    with pytest.raises(RuntimeError):
        ember.pow(ember.tensor(a), -1)


def test_pow_gradcheck():
    gradcheck(lambda m, a: m.pow(a, 3), [(4,)], gradgrad=True)
    gradcheck(lambda m, a: m.pow(a, 2.5), [(4,)], low=0.5, gradgrad=True)
    gradcheck(lambda m, a: m.pow(2.5, a), [(4,)], gradgrad=True)
    gradcheck(lambda m, a, b: m.pow(a, b), [(4,), (4,)], low=0.5, gradgrad=True)


# ---------------------------------------------------------------------- operators
OPS = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "//": lambda a, b: a // b, "%": lambda a, b: a % b,
    "**": lambda a, b: a ** b,
}


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", FLOATS)
def test_operators(op, dtype):
    f = OPS[op]
    # PyTorch has no derivative for //, nor for scalar % tensor
    g = op != "//"
    check(lambda m, a, b: f(a, b), [(3, 4), (4,)], dtype, low=0.5, high=2, grad=g)
    check(lambda m, a: f(a, 2), [(3, 4)], dtype, low=0.5, high=2, grad=g)
    check(lambda m, a: f(a, 1.5), [(3, 4)], dtype, low=0.5, high=2, grad=g)
    check(lambda m, a: f(2, a), [(3, 4)], dtype, low=0.5, high=2, grad=g and op != "%")
    check(lambda m, a: f(1.5, a), [(3, 4)], dtype, low=0.5, high=2, grad=g and op != "%")


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_operators_int(op, dtype):
    if dtype == np.bool_ and op in ("-", "//", "%", "**"):
        pytest.skip("PyTorch rejects or differs on these bool ops")
    f = OPS[op]
    a, b = make_arrays([(3, 4), (4,)], dtype, 1, 5)
    check(lambda m, x, y: f(x, y), None, dtype, grad=False, arrays=[a, b])
    check(lambda m, x: f(x, 2), None, dtype, grad=False, arrays=[a])
    check(lambda m, x: f(x, 1.5), None, dtype, grad=False, arrays=[a])
    if op != "**":
        check(lambda m, x: f(3, x), None, dtype, grad=False, arrays=[a])


def test_matmul_operator():
    check(lambda m, a, b: a @ b, [(3, 4), (4,)])
    check(lambda m, a, b: a @ b, [(2, 3, 4), (4, 2)])


def test_unary_operators():
    check(lambda m, a: (-a, abs(a), +a), [(3, 4)])
    check(lambda m, a: ~a, [(5,)], np.int64, grad=False)
    check(lambda m, a: ~a, [(5,)], np.bool_, grad=False)


BITWISE_OPS = {"&": lambda a, b: a & b, "|": lambda a, b: a | b, "^": lambda a, b: a ^ b,
               "<<": lambda a, b: a << b, ">>": lambda a, b: a >> b}


@pytest.mark.parametrize("op", list(BITWISE_OPS))
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_bitwise_operators(op, dtype):
    if dtype == np.bool_ and op in ("<<", ">>"):
        pytest.skip("shifts are not defined on bool in PyTorch")
    f = BITWISE_OPS[op]
    a, b = make_arrays([(3, 4), (4,)], dtype, 0, 5)
    check(lambda m, x, y: f(x, y), None, dtype, grad=False, arrays=[a, b])
    check(lambda m, x: f(x, 1), None, dtype, grad=False, arrays=[a])


# ---------------------------------------------------------------------- in-place
INPLACE = [
    ("add_", (1.5,)), ("sub_", (2,)), ("mul_", (3,)), ("div_", (2.0,)), ("pow_", (2,)),
    ("remainder_", (1.5,)), ("fmod_", (1.5,)), ("floor_divide_", (0.7,)), ("neg_", ()),
    ("abs_", ()), ("exp_", ()), ("log_", ()), ("sqrt_", ()), ("sin_", ()), ("tanh_", ()),
    ("sigmoid_", ()), ("clamp_", (0.5, 1.5)), ("clamp_min_", (1.0,)), ("clamp_max_", (1.0,)),
    ("floor_", ()), ("round_", ()), ("reciprocal_", ()), ("square_", ()), ("rsqrt_", ()),
    ("relu_", ()), ("erf_", ()), ("expm1_", ()), ("log1p_", ()), ("trunc_", ()), ("frac_", ()),
    ("ceil_", ()), ("sign_", ()), ("atan_", ()), ("cos_", ()), ("lerp_", (2.0, 0.3)),
    ("nan_to_num_", ()), ("hypot_", (2.0,)),
]


@pytest.mark.parametrize("name,args", INPLACE)
@pytest.mark.parametrize("dtype", FLOATS)
def test_inplace(name, args, dtype):
    def fn(m, a):
        targs = tuple(m.tensor(x, dtype=a.dtype) if name in ("lerp_", "hypot_") and
                      i == 0 else x for i, x in enumerate(args))
        y = a * 1  # a non-leaf, so the in-place op is recorded
        r = getattr(y, name)(*targs)
        assert r is y
        return y
    check(fn, [(3, 4)], dtype, low=0.2, high=2, grad=name != "floor_divide_")


@pytest.mark.parametrize("name", ["add_", "sub_", "mul_", "div_", "atan2_", "pow_", "hypot_",
                                  "remainder_", "fmod_", "clamp_min_", "clamp_max_"])
def test_inplace_tensor_other(name):
    def fn(m, a, b):
        y = a * 1
        getattr(y, name)(b)
        return y
    check(fn, [(3, 4), (4,)], low=0.5, high=2)


def test_inplace_operators():
    def fn(m, a, b):
        y = a * 1
        y += b
        y -= 0.5
        y *= b
        y /= 2
        y **= 2
        return y
    check(fn, [(3, 4), (4,)])

    def fn_int(m, a):
        a = a.clone()
        a += 2
        a //= 2
        a %= 3
        a *= 5
        a |= 1
        a &= 7
        a ^= 2
        return a
    check(fn_int, [(3, 4)], np.int64, grad=False, low=0, high=9)


def test_inplace_errors():
    a = ember.ones(3, dtype=ember.int64)
    with pytest.raises(RuntimeError):
        a.add_(1.5)
    with pytest.raises(RuntimeError):
        a.mul_(ember.ones(2, 3, dtype=ember.int64))
    leaf = ember.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError):
        leaf.add_(1)


def test_inplace_div_rounding():
    def fn(m, a):
        y = a * 1
        return y.div_(0.7, rounding_mode="floor"), (a * 1).div_(0.7, rounding_mode="trunc")
    check(fn, [(3, 4)], grad=False)


# ---------------------------------------------------------------------- clamp & friends
@pytest.mark.parametrize("dtype", FLOATS)
def test_clamp(dtype):
    check(lambda m, a: m.clamp(a, -0.5, 0.5), [(3, 4)], dtype)
    check(lambda m, a: m.clamp(a, min=-0.5), [(3, 4)], dtype)
    check(lambda m, a: m.clamp(a, max=0.5), [(3, 4)], dtype)
    check(lambda m, a: a.clip(-1, 0.3), [(3, 4)], dtype)
    check(lambda m, a: m.clamp(a, 0.5, -0.5), [(3, 4)], dtype)  # min > max: all max
    check(lambda m, a, lo, hi: m.clamp(a, lo, hi), [(3, 4), (4,), (3, 1)], dtype)
    check(lambda m, a, lo: m.clamp(a, min=lo), [(3, 4), (4,)], dtype)
    check(lambda m, a, hi: m.clamp(a, max=hi), [(3, 4), (3, 1)], dtype)
    check(lambda m, a: m.clamp_min(a, 0.1), [(3, 4)], dtype)
    check(lambda m, a: m.clamp_max(a, 0.1), [(3, 4)], dtype)
    check(lambda m, a, b: m.clamp_min(a, b), [(3, 4), (4,)], dtype)
    check(lambda m, a, b: m.clamp_max(a, b), [(3, 4), (4,)], dtype)
    check(lambda m, a: m.clamp(a, -0.5, 0.5), [()], dtype)
    check(lambda m, a: m.clamp(a, -0.5, 0.5), [(0, 2)], dtype)


def test_clamp_int_and_nan():
    check(lambda m, a: m.clamp(a, 1, 3), [(6,)], np.int64, grad=False, low=-5, high=5)
    check(lambda m, a: m.clamp(a, 0.5, 3), [(6,)], np.int64, grad=False, low=-5, high=5)
    x = np.array([np.nan, 1.0, -3.0, 3.0])
    check(lambda m, a: m.clamp(a, -1, 1), None, arrays=[x])
    with pytest.raises(RuntimeError):
        ember.clamp(ember.ones(2))


def test_clamp_gradcheck():
    gradcheck(lambda m, a, lo, hi: m.clamp(a, lo, hi), [(3, 4), (4,), (3, 1)], gradgrad=True)


@pytest.mark.parametrize("dtype", FLOATS)
def test_maximum_minimum_ties(dtype):
    a = np.array([1.0, 2.0, 3.0, np.nan], dtype)
    b = np.array([1.0, 3.0, 2.0, 0.0], dtype)
    check(lambda m, x, y: (m.maximum(x, y), m.minimum(x, y)), None, dtype, arrays=[a, b])
    check(lambda m, x, y: (m.max(x, y), m.min(x, y)), None, dtype, arrays=[a, b])


@pytest.mark.parametrize("dtype", FLOATS)
def test_where(dtype):
    c = np.array([[True, False, True, False]])
    check(lambda m, x, y: m.where(m.tensor(c), x, y), [(3, 4), (3, 1)], dtype)
    check(lambda m, x: m.where(m.tensor(c), x, 0.0), [(3, 4)], dtype)
    check(lambda m, x: m.where(m.tensor(c), 1.5, x), [(3, 4)], dtype)
    check(lambda m, x: m.where(x > 0, x, -x), [(3, 4)], dtype)
    check(lambda m, x: x.where(x > 0, 2), [(3, 4)], dtype)
    check(lambda m, x: m.where(x > 0), [(3, 4)], dtype, grad=False)
    check(lambda m, x: m.where(m.tensor(c), 1.0, 0), [(1,)], dtype, grad=False)
    check(lambda m, x, y: m.where(x > y, x, y), [(), ()], dtype)


def test_where_promotes():
    c = np.array([True, False, True])
    a = np.arange(3, dtype=np.int64)
    b = np.ones(3, np.float32)
    check(lambda m, x, y: m.where(m.tensor(c), x, y), None, arrays=[a, b], grad=False)
    check(lambda m, x: m.where(m.tensor(c), x, 2.5), None, arrays=[a], grad=False)


@pytest.mark.parametrize("dtype", FLOATS)
def test_lerp_addcmul_addcdiv(dtype):
    check(lambda m, a, b: m.lerp(a, b, 0.3), [(3, 4), (4,)], dtype)
    check(lambda m, a, b, w: m.lerp(a, b, w), [(3, 4), (3, 4), (4,)], dtype)
    check(lambda m, a, b, c: m.addcmul(a, b, c, value=0.5), [(3, 4), (4,), (3, 1)], dtype)
    check(lambda m, a, b, c: m.addcmul(a, b, c), [(), (3,), (3,)], dtype)
    check(lambda m, a, b, c: m.addcdiv(a, b, c, value=-2), [(3, 4), (4,), (3, 1)], dtype,
          low=0.5)
    check(lambda m, a, b, c: a.addcdiv(b, c), [(3, 4), (3, 4), (3, 4)], dtype, low=0.5)


def test_lerp_addc_gradcheck():
    gradcheck(lambda m, a, b, w: m.lerp(a, b, w), [(3,), (3,), (3,)], gradgrad=True)
    gradcheck(lambda m, a, b, c: m.addcmul(a, b, c, value=2), [(3,), (3,), (3,)], gradgrad=True)
    gradcheck(lambda m, a, b, c: m.addcdiv(a, b, c, value=2), [(3,), (3,), (3,)], low=0.5,
              gradgrad=True)


def test_nan_to_num():
    x = np.array([np.nan, np.inf, -np.inf, 1.5, -2.0])
    check(lambda m, a: m.nan_to_num(a), None, arrays=[x])
    check(lambda m, a: m.nan_to_num(a, nan=1.0, posinf=9.0, neginf=-9.0), None, arrays=[x])
    check(lambda m, a: m.nan_to_num(a, 2.0), None, np.float32, arrays=[x.astype(np.float32)])
    check(lambda m, a: m.nan_to_num(a), [(4,)], np.int64, grad=False)


def test_sign_nan_and_round_int():
    x = np.array([np.nan, -0.0, 0.0, 2.0, -3.0])
    check(lambda m, a: (m.sign(a), m.sgn(a)), None, arrays=[x])
    check(lambda m, a: m.round(a), [(4,)], np.int64, grad=False)
    with pytest.raises(NotImplementedError):
        ember.round(ember.tensor([15]), decimals=-1)


@pytest.mark.parametrize("decimals", [0, 1, 2, -1])
@pytest.mark.parametrize("dtype", FLOATS)
def test_round_decimals(decimals, dtype):
    x = np.array([1.25, -2.35, 0.5, 1.5, 2.5, -0.5, 123.456, 15.0], dtype)
    check(lambda m, a: m.round(a, decimals=decimals), None, dtype, arrays=[x])


# ---------------------------------------------------------------------- comparisons & logic
CMP = ["eq", "ne", "lt", "le", "gt", "ge", "greater", "greater_equal", "less", "less_equal",
       "not_equal"]


@pytest.mark.parametrize("name", CMP)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int8, np.bool_])
def test_comparisons(name, dtype):
    a, b = make_arrays([(3, 4), (4,)], dtype, -2, 2)
    a[0] = b  # ensure ties
    check(lambda m, x, y: getattr(m, name)(x, y), None, dtype, grad=False, arrays=[a, b])
    check(lambda m, x: getattr(m, name)(x, 1), None, dtype, grad=False, arrays=[a])
    check(lambda m, x: getattr(m, name)(x, 0.5), None, dtype, grad=False, arrays=[a])
    check(lambda m, x: getattr(x, name)(1), None, dtype, grad=False, arrays=[a])


def test_comparison_operators():
    check(lambda m, a, b: (a == b, a != b, a < b, a <= b, a > b, a >= b), [(3, 4), (4,)],
          grad=False)
    check(lambda m, a: (a == 1, 1 < a, 0.5 >= a, a != 0), [(3, 4)], grad=False)
    check(lambda m, a, b: m.eq(a, b), [(0, 3), (3,)], grad=False)


def test_mixed_dtype_comparisons():
    a = np.array([1, 2, 3], np.int64)
    b = np.array([1.0, 2.5, 2.0], np.float32)
    check(lambda m, x, y: (x < y, x == y, m.maximum(x, y)), None, arrays=[a, b], grad=False)


def test_isnan_isinf_isfinite():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 1.0, -2.0])
    for dt in FLOATS:
        check(lambda m, a: (m.isnan(a), m.isinf(a), m.isfinite(a), m.isposinf(a),
                            m.isneginf(a), m.isreal(a)), None, dt, arrays=[x.astype(dt)])
    check(lambda m, a: (m.isnan(a), m.isinf(a), m.isfinite(a)), [(4,)], np.int64, grad=False)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_isclose_allclose_equal(dtype):
    a = np.array([1.0, 2.0, np.nan, 3.0, 1e-9], dtype)
    b = np.array([1.0 + 1e-7, 2.1, np.nan, 3.0, 0.0], dtype)
    check(lambda m, x, y: m.isclose(x, y), None, dtype, arrays=[a, b], grad=False)
    check(lambda m, x, y: m.isclose(x, y, rtol=0.1, equal_nan=True), None, dtype, arrays=[a, b],
          grad=False)
    check(lambda m, x, y: x.isclose(y, atol=0.2), None, dtype, arrays=[a, b], grad=False)
    for args in [(), (0.1, 0.0, True)]:
        assert ember.allclose(ember.tensor(a), ember.tensor(b), *args) == \
            torch.allclose(torch.tensor(a), torch.tensor(b), *args)
    assert ember.allclose(ember.tensor(a[:2]), ember.tensor(a[:2]))
    assert ember.equal(ember.tensor(a[:2]), ember.tensor(a[:2]))
    assert not ember.equal(ember.tensor(a[:2]), ember.tensor(a[:3]))
    assert not ember.equal(ember.tensor(a), ember.tensor(a))  # NaN != NaN
    assert ember.tensor(a[:2]).equal(ember.tensor(a[:2]))


LOGIC = ["logical_and", "logical_or", "logical_xor"]


@pytest.mark.parametrize("name", LOGIC)
@pytest.mark.parametrize("dtype", [np.bool_, np.int64, np.float32])
def test_logical(name, dtype):
    a, b = make_arrays([(3, 4), (4,)], dtype, -1, 1)
    check(lambda m, x, y: getattr(m, name)(x, y), None, dtype, grad=False, arrays=[a, b])
    check(lambda m, x: m.logical_not(x), None, dtype, grad=False, arrays=[a])


BITWISE = ["bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_left_shift",
           "bitwise_right_shift"]


@pytest.mark.parametrize("name", BITWISE)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint8, np.bool_])
def test_bitwise(name, dtype):
    if dtype == np.bool_ and "shift" in name:
        pytest.skip("shifts are not defined on bool in PyTorch")
    a, b = make_arrays([(3, 4), (4,)], dtype, 0, 5)
    check(lambda m, x, y: getattr(m, name)(x, y), None, dtype, grad=False, arrays=[a, b])
    check(lambda m, x: getattr(m, name)(x, 2), None, dtype, grad=False, arrays=[a])
    check(lambda m, x: m.bitwise_not(x), None, dtype, grad=False, arrays=[a])


def test_bitwise_float_raises():
    with pytest.raises(RuntimeError):
        ember.bitwise_and(ember.ones(2), ember.ones(2))


# ---------------------------------------------------------------------- errors
def test_binary_shape_mismatch():
    with pytest.raises(RuntimeError, match="size"):
        ember.add(ember.ones(2, 3), ember.ones(4))


def test_bool_sub_neg_raise():
    b = ember.tensor([True, False])
    with pytest.raises(RuntimeError):
        b - b
    with pytest.raises(RuntimeError):
        -b


def test_int_div_by_zero_raises():
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        ember.tensor([1, 2]) // ember.tensor([1, 0])
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        ember.remainder(ember.tensor([1, 2]), 0)


def test_out_argument():
    a, b = ember.ones(3), ember.full((3,), 2.0)
    out = ember.empty(3)
    r = ember.add(a, b, out=out)
    assert r is out and out.tolist() == [3.0, 3.0, 3.0]
    ember.exp(ember.zeros(2), out=out)
    assert out.shape == (2,) and out.tolist() == [1.0, 1.0]


def test_add_alpha():
    check(lambda m, a, b: m.add(a, b, alpha=2), [(3, 4), (4,)])
    check(lambda m, a, b: m.sub(a, b, alpha=0.5), [(3, 4), (4,)])
    check(lambda m, a, b: a.add(b, alpha=-1), [(3,), ()])
    check(lambda m, a: m.add(a, 2, alpha=3), [(3,)], np.int64, grad=False)


def test_float16_bfloat16_arith():
    for dt in (ember.float16, ember.bfloat16):
        x = ember.tensor([1.0, 2.0, 3.0], dtype=dt)
        tdt = getattr(torch, dt.name)
        tx = torch.tensor([1.0, 2.0, 3.0], dtype=tdt)
        for f in (lambda m, a: a + a, lambda m, a: a * 2.5, lambda m, a: m.exp(a),
                  lambda m, a: a / 3):
            e, t = f(ember, x), f(torch, tx)
            assert e.dtype.name == str(t.dtype).split(".")[1]
            np.testing.assert_allclose(e.float().numpy(), t.float().numpy(), rtol=1e-2)


# ---------------------------------------------------------------------- complex gradients
COMPLEX_FNS = {
    "add": lambda m, a, b: a + b, "sub": lambda m, a, b: a - b, "mul": lambda m, a, b: a * b,
    "div": lambda m, a, b: a / b, "pow": lambda m, a, b: a ** b, "pow_scalar": lambda m, a, b: a ** 2.5,
    "exp": lambda m, a, b: m.exp(a), "log": lambda m, a, b: m.log(a),
    "sqrt": lambda m, a, b: m.sqrt(a), "sin": lambda m, a, b: m.sin(a),
    "tanh": lambda m, a, b: m.tanh(a), "abs": lambda m, a, b: m.abs(a) * 1,
    "sigmoid": lambda m, a, b: m.sigmoid(a), "reciprocal": lambda m, a, b: m.reciprocal(a),
    "rsqrt": lambda m, a, b: m.rsqrt(a), "square": lambda m, a, b: m.square(a),
    "expm1": lambda m, a, b: m.expm1(a), "log1p": lambda m, a, b: m.log1p(a),
    "asin": lambda m, a, b: m.asin(a), "atanh": lambda m, a, b: m.atanh(a),
    "tan": lambda m, a, b: m.tan(a), "neg": lambda m, a, b: -a,
    "where": lambda m, a, b: m.where(a.real > 0, a, b),
    "addcmul": lambda m, a, b: m.addcmul(a, a, b, value=0.5),
    "addcdiv": lambda m, a, b: m.addcdiv(a, a, b), "lerp": lambda m, a, b: m.lerp(a, b, a),
    "conj": lambda m, a, b: a.conj() * b, "real_imag": lambda m, a, b: a.real * b.imag,
    "sum": lambda m, a, b: (a * b).sum() * 1, "mean": lambda m, a, b: a.mean() * 1,
    "prod": lambda m, a, b: a.prod() * 1, "cumsum": lambda m, a, b: a.cumsum(0),
    "cumprod": lambda m, a, b: a.cumprod(0), "var": lambda m, a, b: a.var() * 1,
    "norm": lambda m, a, b: a.norm() * 1, "logsumexp": lambda m, a, b: m.logsumexp(a, 0) * 1,
}


@pytest.mark.parametrize("name", list(COMPLEX_FNS))
def test_complex_gradients(name):
    """Complex inputs take the conjugate derivative, as in PyTorch."""
    rng = np.random.default_rng(0)
    z, w, g = (rng.normal(size=3) + 1j * rng.normal(size=3) for _ in range(3))
    f = COMPLEX_FNS[name]
    res = []
    for m in (torch, ember):
        a, b = m.tensor(z, requires_grad=True), m.tensor(w, requires_grad=True)
        r = f(m, a, b)
        gr = g[:r.numel()].reshape(tuple(r.shape))
        gr = m.tensor(gr if r.is_complex() else gr.real.copy())
        grads = m.autograd.grad(r, [a, b], gr, allow_unused=True)
        res.append([np.asarray(r.tolist())] + [np.zeros(3) if x is None else
                                                np.asarray(x.tolist()) for x in grads])
    for t, e in zip(*res):
        np.testing.assert_allclose(e, t, rtol=1e-10, atol=1e-12)
