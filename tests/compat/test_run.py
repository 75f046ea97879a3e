"""``ember-run`` / ``python -m ember.run`` / ``ember.compat.alias_torch()``.

Every program runs in a subprocess with a hard timeout, in this environment where the real
PyTorch IS installed: the alias must win all the same."""

import os
import subprocess
import sys
import textwrap

import pytest

import ember

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 120


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(args, cwd, check=True):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=TIMEOUT)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\n"
                             f"stderr:\n{proc.stderr}")
    return proc


def _script(tmp_path, body, name="prog.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


PROBE = """
    import sys, importlib.metadata, importlib.util
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torch.cuda
    import torchvision
    import ember
    assert torch is ember and nn is ember.nn and F is ember.nn.functional, torch
    assert sys.modules["torch.nn"] is ember.nn
    assert torchvision is ember.vision
    assert torch.__file__ == ember.__file__
    assert torch.__version__ >= "2.0" and torch.__version__ < "3"
    assert torch.__version__ >= (2, 1)
    assert str(torch.__version__).startswith("2.13.0+ember")
    assert importlib.metadata.version("torch") == torch.__version__
    assert importlib.util.find_spec("torch").origin == ember.__file__
    assert ember.nn.__spec__.name == "ember.nn"   # the module keeps its own spec
    assert not torch.cuda.is_available()
    assert __name__ == "__main__"
    print("ARGV", sys.argv)
    print("PATH0", sys.path[0])
"""


def test_ember_run_script(tmp_path):
    prog = _script(tmp_path, PROBE)
    out = _run(["-m", "ember.run", str(prog), "--lr", "0.1", "x"], cwd=tmp_path).stdout
    assert f"ARGV {[str(prog), '--lr', '0.1', 'x']}" in out
    assert f"PATH0 {tmp_path}" in out


def test_ember_run_module(tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    _script(pkg, PROBE, name="prog.py")
    out = _run(["-m", "ember.run", "-m", "mypkg.prog", "a"], cwd=tmp_path).stdout
    assert f"ARGV {[str(pkg / 'prog.py'), 'a']}" in out


def test_console_script_entry_point():
    # the console script `ember-run` calls ember.run:main
    from ember.run import main
    assert callable(main)
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts["ember-run"] == "ember.run:main"


def test_ember_run_usage_and_missing_file(tmp_path):
    proc = _run(["-m", "ember.run"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "usage: ember-run" in proc.stderr
    proc = _run(["-m", "ember.run", "nope.py"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "nope.py" in proc.stderr


def test_script_exit_code_and_exception(tmp_path):
    prog = _script(tmp_path, "import sys, torch\nsys.exit(3)\n")
    assert _run(["-m", "ember.run", str(prog)], cwd=tmp_path, check=False).returncode == 3
    prog = _script(tmp_path, "import torch\nraise ValueError('boom')\n", name="bad.py")
    proc = _run(["-m", "ember.run", str(prog)], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "ValueError: boom" in proc.stderr


def test_training_script_runs(tmp_path):
    prog = _script(tmp_path, """
        import torch
        from torch import nn, optim
        from torch.utils.data import DataLoader, TensorDataset
        torch.manual_seed(0)
        x = torch.randn(64, 4)
        y = x.sum(1, keepdim=True)
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        opt = optim.Adam(model.parameters(), lr=1e-2)
        first = None
        for epoch in range(20):
            for xb, yb in DataLoader(TensorDataset(x, y), batch_size=16):
                loss = nn.functional.mse_loss(model(xb), yb)
                opt.zero_grad(); loss.backward(); opt.step()
                first = first if first is not None else loss.item()
        assert loss.item() < first / 4, (first, loss.item())
        print("OK", type(model).__module__)
    """)
    out = _run(["-m", "ember.run", str(prog)], cwd=tmp_path).stdout
    assert "OK ember.nn.modules.container" in out


def test_whole_model_pickle_names_ember_and_loads_both_ways(tmp_path):
    ckpt = tmp_path / "model.pt"
    save = _script(tmp_path, f"""
        import torch
        from torch import nn
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
        torch.save(m, {str(ckpt)!r})
        torch.save(m(torch.ones(1, 1, 4, 4)), {str(ckpt) + '.out'!r})
    """, name="save.py")
    _run(["-m", "ember.run", str(save)], cwd=tmp_path)
    import zipfile
    with zipfile.ZipFile(ckpt) as zf:
        pkl = zf.read([n for n in zf.namelist() if n.endswith("data.pkl")][0])
    assert b"ember.nn.modules.conv" in pkl and b"torch.nn.modules" not in pkl
    # without the alias, in this process
    m = ember.load(ckpt, weights_only=False)
    want = ember.load(str(ckpt) + ".out")
    assert isinstance(m, ember.nn.Sequential)
    ember.testing.assert_close(m(ember.ones(1, 1, 4, 4)), want)
    # with the alias, in another program
    load = _script(tmp_path, f"""
        import torch
        m = torch.load({str(ckpt)!r}, weights_only=False)
        want = torch.load({str(ckpt) + '.out'!r})
        torch.testing.assert_close(m(torch.ones(1, 1, 4, 4)), want)
        print("LOADED", type(m).__module__)
    """, name="load.py")
    assert "LOADED ember.nn.modules.container" in _run(["-m", "ember.run", str(load)],
                                                         cwd=tmp_path).stdout


def test_alias_torch_in_running_interpreter(tmp_path):
    prog = _script(tmp_path, """
        import ember.compat
        e = ember.compat.alias_torch()
        assert ember.compat.alias_torch() is e      # idempotent
        import torch, torch.optim.lr_scheduler
        assert torch is e and torch.optim.lr_scheduler is e.optim.lr_scheduler
        assert ember.compat.is_aliased()
        ember.compat.unalias_torch()
        assert "torch" not in __import__("sys").modules
        print("OK")
    """)
    assert "OK" in _run([str(prog)], cwd=tmp_path).stdout


def test_alias_refuses_when_real_torch_imported(tmp_path):
    pytest.importorskip("torch")
    prog = _script(tmp_path, """
        import torch
        import ember.compat
        try:
            ember.compat.alias_torch()
        except RuntimeError as e:
            assert "real PyTorch is already imported" in str(e), e
            print("REFUSED")
    """)
    assert "REFUSED" in _run([str(prog)], cwd=tmp_path).stdout


@pytest.mark.parametrize("a,b", [("2.13.0+ember0.1.0", "2.13"), ("2.13.0", "2.13.0rc1"),
                                 ("2.13.0rc1", "2.13.0.dev20250101"), ("2.13.1", "2.13.0"),
                                 ("2.13.0.post1", "2.13.0"), ("10.0", "9.9.9")])
def test_torch_version_compares_as_a_version(a, b):
    from ember.compat import TorchVersion
    assert TorchVersion(a) > b and TorchVersion(b) < a and TorchVersion(a) != b
    assert not TorchVersion(a) <= b
    assert TorchVersion("2.13") == "2.13.0" and TorchVersion("2.13.0") >= (2, 13)
    packaging = pytest.importorskip("packaging.version")
    assert (packaging.Version(a) > packaging.Version(b)) is (TorchVersion(a) > b)


def test_torch_version_module():
    import ember.version
    import ember.torch_version
    assert ember.version.cuda is None and ember.version.__version__ >= "2.13"
    assert isinstance(ember.version.__version__, ember.torch_version.TorchVersion)
