"""``torch.nn.utils.spectral_norm``: the hook-based spectral normalization (Miyato et al.
2018) at PyTorch's path, with its state-dict hooks: checkpoints record the scheme's version
under ``metadata["spectral_norm"]``, and version-0 checkpoints (``weight``, ``weight_orig``,
``weight_u``, no ``weight_v``) load by solving for ``v``, as PyTorch does."""

from __future__ import annotations

from .weight_norm import SpectralNorm
from .weight_norm import remove_spectral_norm as _remove_spectral_norm
from .weight_norm import spectral_norm as _spectral_norm

__all__ = ["SpectralNorm", "SpectralNormLoadStateDictPreHook", "SpectralNormStateDictHook",
           "spectral_norm", "remove_spectral_norm"]

# the scheme's version recorded in checkpoints: 1 stores ``weight_v`` (PyTorch's current)
SpectralNorm._version = 1


def _solve_v_and_rescale(fn, weight_mat, u, target_sigma):
    """The ``v`` with ``u = W v / |W v|`` (least squares), scaled so ``u^T W v = sigma``."""
    w = weight_mat
    v = (w.t() @ w).pinverse() @ w.t() @ u.unsqueeze(1)  # pinverse's rcond, as PyTorch
    v = v.squeeze(1)
    return v * (target_sigma / (u @ (w @ v)))


class SpectralNormLoadStateDictPreHook:
    """Before loading: a version-0 checkpoint gets its ``<name>_v`` computed from
    ``<name>_orig``, ``<name>`` and ``<name>_u``."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, state_dict, prefix, local_metadata, strict, missing_keys,
                 unexpected_keys, error_msgs):
        from ... import no_grad
        fn = self.fn
        version = local_metadata.get("spectral_norm", {}).get(fn.name + ".version", None)
        if version is not None and version >= 1:
            return
        key = prefix + fn.name
        if version is None and key not in state_dict and \
                all(key + s in state_dict for s in ("_orig", "_u", "_v")):
            return  # saved without metadata (e.g. an OrderedDict copy): already current
        missing = [key + s for s in ("_orig", "", "_u") if key + s not in state_dict]
        if missing:
            if strict:
                missing_keys.extend(missing)
            return
        with no_grad():
            orig = state_dict[key + "_orig"]
            weight = state_dict.pop(key)
            sigma = (orig / weight).mean()
            mat = fn.reshape_weight_to_matrix(orig)
            state_dict[key + "_v"] = _solve_v_and_rescale(fn, mat, state_dict[key + "_u"],
                                                          sigma)


class SpectralNormStateDictHook:
    """After ``state_dict()``: records the scheme's version in the module's metadata."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, module, state_dict, prefix, local_metadata):
        meta = local_metadata.setdefault("spectral_norm", {})
        key = self.fn.name + ".version"
        if key in meta:
            raise RuntimeError(f"Unexpected key in metadata['spectral_norm']: {key}")
        meta[key] = self.fn._version


def spectral_norm(module, name="weight", n_power_iterations=1, eps=1e-12, dim=None):
    """Divide ``module.<name>`` by its spectral norm (power iteration) before every forward;
    ``dim`` defaults to 1 for transposed convolutions, else 0. Registers the state-dict hooks
    that version the checkpoint, as PyTorch's."""
    _spectral_norm(module, name, n_power_iterations, eps, dim)
    fn = next(h for h in module._forward_pre_hooks.values()
              if isinstance(h, SpectralNorm) and h.name == name)
    module._register_state_dict_hook(SpectralNormStateDictHook(fn))
    module._register_load_state_dict_pre_hook(SpectralNormLoadStateDictPreHook(fn))
    return module


def remove_spectral_norm(module, name="weight"):
    """Fold ``spectral_norm`` back into a plain parameter ``module.<name>`` and drop its
    state-dict hooks."""
    _remove_spectral_norm(module, name)
    for hooks, cls in ((module._state_dict_hooks, SpectralNormStateDictHook),
                       (module._load_state_dict_pre_hooks, SpectralNormLoadStateDictPreHook)):
        for k, h in list(hooks.items()):
            if isinstance(h, cls) and h.fn.name == name:
                del hooks[k]
    return module
