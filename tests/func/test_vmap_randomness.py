"""vmap's ``randomness`` flag against torch.func's semantics: "different" draws independent
numbers per example, "same" one draw for the whole batch, "error" refuses random ops. The
numbers themselves come from different generators, so the tests compare shapes, which rows
repeat, errors, and the statistics of the draws."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

B = 64


def programs(lib):
    F = lib.nn.functional
    return {
        "rand": lambda v: v * lib.rand(32),
        "randn": lambda v: v + lib.randn(32),
        "randint": lambda v: v + lib.randint(0, 1000, (32,)).float(),
        "normal": lambda v: v + lib.normal(0.0, 1.0, size=(32,)),
        "rand_like": lambda v: v * lib.rand_like(v),
        "randn_like": lambda v: v + lib.randn_like(v),
        "bernoulli": lambda v: lib.bernoulli(v * 0.5),
        "dropout": lambda v: F.dropout(v, 0.5, training=True),
        "dropout_module": lambda v: lib.nn.Dropout(0.3)(v),
        "uniform_": lambda v: v.clone().uniform_(),
        "normal_": lambda v: v.clone().normal_(),
    }


def _rows_distinct(out):
    rows = {tuple(r) for r in np.asarray(out.tolist()).round(6)}
    return len(rows)


@pytest.mark.parametrize("name", list(programs(ember)))
def test_different_draws_per_example(name):
    x, tx = ember.ones(B, 32), torch.ones(B, 32)
    got = ember.func.vmap(programs(ember)[name], randomness="different")(x)
    want = torch.func.vmap(programs(torch)[name], randomness="different")(tx)
    assert tuple(got.shape) == tuple(want.shape) == (B, 32)
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    # independent draws: (almost) every row differs, as with torch.func
    assert _rows_distinct(got) >= B - 2 and _rows_distinct(want) >= B - 2


# a random function of batched values under "same": PyTorch refuses it, and so does ember
SAME_UNSUPPORTED = ("bernoulli",)


@pytest.mark.parametrize("name", list(programs(ember)))
def test_same_draws_once_for_the_batch(name):
    x, tx = ember.ones(B, 32), torch.ones(B, 32)
    if name in SAME_UNSUPPORTED:
        with pytest.raises(RuntimeError, match="same randomness with a batched tensor"):
            torch.func.vmap(programs(torch)[name], randomness="same")(tx)
        with pytest.raises(RuntimeError, match="same randomness with a batched tensor"):
            ember.func.vmap(programs(ember)[name], randomness="same")(x)
        return
    got = ember.func.vmap(programs(ember)[name], randomness="same")(x)
    want = torch.func.vmap(programs(torch)[name], randomness="same")(tx)
    assert tuple(got.shape) == tuple(want.shape)
    assert _rows_distinct(got) == _rows_distinct(want) == 1


@pytest.mark.parametrize("name", list(programs(ember)))
def test_error_mode_refuses_random_ops(name):
    with pytest.raises(RuntimeError) as want:
        torch.func.vmap(programs(torch)[name])(torch.ones(3, 8))
    with pytest.raises(RuntimeError) as got:
        ember.func.vmap(programs(ember)[name])(ember.ones(3, 8))
    assert "randomness error mode" in str(got.value) and "randomness error mode" in \
        str(want.value)


def test_different_statistics():
    ember.manual_seed(0)
    u = ember.func.vmap(lambda v: lib_rand(v), randomness="different")(ember.ones(4000, 1))
    a = u.numpy().ravel()
    assert abs(a.mean() - 0.5) < 0.02 and abs(a.var() - 1 / 12) < 0.01
    d = ember.func.vmap(lambda v: ember.nn.functional.dropout(v, 0.25),
                        randomness="different")(ember.ones(500, 16))
    kept = (d.numpy() != 0).mean()
    assert abs(kept - 0.75) < 0.02
    np.testing.assert_allclose(np.unique(d.numpy()), [0.0, 1 / 0.75], rtol=1e-6)


def lib_rand(v):
    return v * ember.rand(())


def test_same_seed_same_numbers():
    f = ember.func.vmap(lambda v: v + ember.randn(3), randomness="different")
    ember.manual_seed(7)
    a = f(ember.zeros(5, 3))
    ember.manual_seed(7)
    b = f(ember.zeros(5, 3))
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_in_place_fill_writes_through_to_the_input():
    x, tx = ember.zeros(6, 3), torch.zeros(6, 3)

    def f(v):
        v.uniform_()
        return v
    ember.func.vmap(f, randomness="different")(x)
    torch.func.vmap(f, randomness="different")(tx)
    assert (x.numpy() != 0).all() and (tx.numpy() != 0).all()
    assert _rows_distinct(x) == _rows_distinct(tx) == 6


def test_nested_different_draws_per_inner_and_outer_example():
    f = ember.func.vmap(ember.func.vmap(lambda v: v + ember.rand(()), randomness="different"),
                        randomness="different")
    out = f(ember.zeros(5, 7)).numpy()
    assert out.shape == (5, 7) and len(np.unique(out)) == 35
    tf = torch.func.vmap(torch.func.vmap(lambda v: v + torch.rand(()), randomness="different"),
                         randomness="different")
    assert len(np.unique(tf(torch.zeros(5, 7)).numpy())) == 35


def test_per_sample_grads_with_dropout_draw_a_mask_per_example():
    # the use case: per-sample gradients of a model with dropout, each example its own mask
    from ember.func import functional_call, grad, vmap
    model = ember.nn.Sequential(ember.nn.Linear(4, 8), ember.nn.Dropout(0.5),
                                ember.nn.Linear(8, 1))
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = ember.randn(6, 4)

    def loss(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).sum()
    g = vmap(grad(loss), in_dims=(None, 0), randomness="different")(params, x)
    assert g["0.weight"].shape == (6, 8, 4)
    # examples see different masks: their first-layer gradients differ in which rows are zero
    zero_rows = [tuple((g["0.weight"][i].abs().sum(1) == 0).tolist()) for i in range(6)]
    assert len(set(zero_rows)) > 1


def test_nested_same_inside_different():
    """An inner "same" level shares one draw within its batch; the outer "different" level
    still draws per outer example."""
    y = ember.zeros(4, 3, 8)
    r = ember.func.vmap(ember.func.vmap(lambda t: t + ember.rand(8), randomness="same"),
                        randomness="different")(y)
    assert all(bool((r[i, 0] == r[i, j]).all()) for i in range(4) for j in range(3))
    assert _rows_distinct(r[:, 0]) == 4
