"""einops and safetensors, unmodified, on ember through the torch alias (values checked
against NumPy). The real PyTorch is hidden from the child process (see _runner.py)."""

import pytest

from ._runner import run_under_alias

pytest.importorskip("einops")


def test_einops_functions_and_layers():
    out = run_under_alias("""
        import numpy as np
        import einops
        from einops import rearrange, reduce, repeat, einsum
        from einops.layers.torch import Rearrange, Reduce
        x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
        a = x.numpy()
        np.testing.assert_array_equal(rearrange(x, "b c h w -> b (h w) c").numpy(),
                                      a.transpose(0, 2, 3, 1).reshape(2, 20, 3))
        np.testing.assert_allclose(reduce(x, "b c (h h2) w -> b c h w", "mean", h2=2).numpy(),
                                   a.reshape(2, 3, 2, 2, 5).mean(3))
        np.testing.assert_allclose(reduce(x, "b c h w -> b c", "max").numpy(), a.max((2, 3)))
        np.testing.assert_array_equal(repeat(x[0, 0], "h w -> h w k", k=3).numpy(),
                                      np.repeat(a[0, 0][..., None], 3, -1))
        y = torch.randn(2, 5, 6)
        np.testing.assert_allclose(einsum(x, y, "b c h w, b w k -> b c h k").numpy(),
                                   np.einsum("bchw,bwk->bchk", a, y.numpy()), rtol=1e-5,
                                   atol=1e-4)
        # layers inside a model, trained one step
        model = torch.nn.Sequential(Rearrange("b c h w -> b (c h w)"), torch.nn.Linear(60, 8),
                                    Rearrange("b (g k) -> b g k", g=2),
                                    Reduce("b g k -> b k", "mean"))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        xs = x / x.numel()
        loss = model(xs).pow(2).mean()
        loss.backward()
        opt.step()
        assert model(xs).pow(2).mean().item() < loss.item()
        print("EINOPS", einops.__version__)
    """)
    assert "EINOPS" in out


def test_safetensors_torch_save_and_load(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "w.safetensors"
    out = run_under_alias(f"""
        import numpy as np
        from safetensors.torch import save_file, load_file, save, load
        tensors = {{"w": torch.randn(3, 4), "b": torch.arange(5),
                    "h": torch.ones(2, dtype=torch.bfloat16),
                    "d": torch.randn(2, 2, dtype=torch.float64)}}
        save_file(tensors, {str(path)!r}, metadata={{"k": "v"}})
        back = load_file({str(path)!r})
        assert set(back) == set(tensors)
        for k in tensors:
            assert back[k].dtype == tensors[k].dtype, k
            np.testing.assert_array_equal(back[k].float().numpy(), tensors[k].float().numpy())
        blob = save({{"x": torch.ones(3)}})
        assert load(blob)["x"].tolist() == [1.0, 1.0, 1.0]
        print("SAFETENSORS OK")
    """)
    assert "SAFETENSORS OK" in out
    # and the file is a real safetensors file, readable without torch
    from safetensors.numpy import load_file
    arrays = load_file(str(path))
    assert arrays["w"].shape == (3, 4) and arrays["b"].tolist() == [0, 1, 2, 3, 4]
