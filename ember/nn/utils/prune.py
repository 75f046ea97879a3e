"""``torch.nn.utils.prune``: prune a module's parameter by a mask, as PyTorch does it.

Pruning ``name`` turns the parameter into ``name + "_orig"`` (still the trained Parameter),
adds a buffer ``name + "_mask"`` and a forward pre-hook that sets the plain attribute ``name``
to ``orig * mask`` before every forward; ``remove`` makes the pruned value the parameter
again. Pruning the same parameter again combines masks: an unstructured method chooses among
the entries still unpruned (``amount`` counts those), a structured one over whole slices."""

from __future__ import annotations


import numbers

__all__ = ["BasePruningMethod", "CustomFromMask", "Identity", "L1Unstructured", "LnStructured",
           "PruningContainer", "RandomStructured", "RandomUnstructured", "custom_from_mask",
           "global_unstructured", "identity", "is_pruned", "l1_unstructured", "ln_structured",
           "random_structured", "random_unstructured", "remove"]


def _n_to_prune(amount, n):
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise TypeError(f"Invalid type for amount: {amount}. Must be int or float.")
    if isinstance(amount, numbers.Integral):
        if amount < 0:
            raise ValueError(f"amount={amount} should be a non-negative integer")
        if amount > n:
            raise ValueError(f"amount={amount} should be smaller than the number of parameters "
                             f"to prune={n}")
        return int(amount)
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount={amount} should be a float in the range [0, 1]")
    return round(amount * n)


class BasePruningMethod:
    """A pruning method: ``compute_mask(t, default_mask)`` returns the new mask."""

    PRUNING_TYPE = "unstructured"
    _tensor_name = None

    def __call__(self, module, inputs):
        setattr(module, self._tensor_name, self.apply_mask(module))

    def compute_mask(self, t, default_mask):
        raise NotImplementedError

    def apply_mask(self, module):
        """``orig * mask`` of the pruned parameter."""
        orig = getattr(module, self._tensor_name + "_orig")
        mask = getattr(module, self._tensor_name + "_mask")
        return orig * mask.to(dtype=orig.dtype)

    @classmethod
    def apply(cls, module, name, *args, importance_scores=None, **kwargs):
        """Prune ``module.name`` with a new ``cls(*args, **kwargs)``, reparametrizing it."""
        from ...autograd.grad_mode import no_grad
        old = None
        for k, hook in list(module._forward_pre_hooks.items()):
            if isinstance(hook, BasePruningMethod) and hook._tensor_name == name:
                old = hook
                del module._forward_pre_hooks[k]
        method = cls(*args, **kwargs)
        method._tensor_name = name
        if old is not None:
            container = old if isinstance(old, PruningContainer) else PruningContainer(old)
            container.add_pruning_method(method)
            method = container
        orig = getattr(module, name + "_orig") if old is not None else getattr(module, name)
        scores = importance_scores if importance_scores is not None else orig
        if tuple(scores.shape) != tuple(orig.shape):
            raise ValueError(f"importance_scores should have the same shape as parameter "
                             f"{name} of {module}")
        if old is None:
            # the parameter moves to name_orig; name becomes a plain attribute
            module.register_parameter(name + "_orig", orig)
            del module._parameters[name]
            default_mask = orig.detach().new_ones(orig.shape)
        else:
            default_mask = getattr(module, name + "_mask").detach().clone()
        with no_grad():
            mask = method.compute_mask(scores, default_mask=default_mask)
        module.register_buffer(name + "_mask", mask)
        setattr(module, name, method.apply_mask(module))
        module.register_forward_pre_hook(method)
        return method

    def prune(self, t, default_mask=None, importance_scores=None):
        """``t`` with this method's mask applied (no module involved)."""
        scores = importance_scores if importance_scores is not None else t
        default_mask = default_mask if default_mask is not None else t.new_ones(t.shape)
        return t * self.compute_mask(scores, default_mask=default_mask)

    def remove(self, module):
        """Make the pruned value the parameter ``name`` again; drop ``_orig``/``_mask``."""
        from ..parameter import Parameter
        name = self._tensor_name
        weight = self.apply_mask(module)
        if hasattr(module, name):
            delattr(module, name)
        orig = module._parameters[name + "_orig"]
        orig.data = weight.data
        del module._parameters[name + "_orig"]
        del module._buffers[name + "_mask"]
        setattr(module, name, orig if isinstance(orig, Parameter) else Parameter(orig))


class PruningContainer(BasePruningMethod):
    """The sequence of methods applied, in order, to one parameter."""

    def __init__(self, *methods):
        self._pruning_methods = ()
        for m in methods:
            self.add_pruning_method(m)

    def add_pruning_method(self, method):
        if self._tensor_name is None:
            self._tensor_name = method._tensor_name
        elif method._tensor_name != self._tensor_name:
            raise ValueError(f"Can only add pruning methods acting on the parameter named "
                             f"'{self._tensor_name}' to PruningContainer. Found "
                             f"'{method._tensor_name}'")
        self._pruning_methods += (method,)

    def __len__(self):
        return len(self._pruning_methods)

    def __iter__(self):
        return iter(self._pruning_methods)

    def __getitem__(self, i):
        return self._pruning_methods[i]

    def compute_mask(self, t, default_mask):
        """The last method's mask, computed over what the earlier ones left."""
        method = self._pruning_methods[-1]
        if method.PRUNING_TYPE == "unstructured":
            # choose among the surviving entries only
            keep = default_mask == 1
            new_partial = method.compute_mask(t[keep], default_mask=default_mask[keep])
            mask = default_mask.clone()
            mask[keep] = new_partial.to(dtype=mask.dtype)
            return mask
        if method.PRUNING_TYPE == "structured":
            return method.compute_mask(t, default_mask=default_mask) * default_mask
        return method.compute_mask(t, default_mask=default_mask) * default_mask


class Identity(BasePruningMethod):
    """Prunes nothing (a mask of ones)."""

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t, default_mask):
        return default_mask

    @classmethod
    def apply(cls, module, name):
        return super().apply(module, name)


class RandomUnstructured(BasePruningMethod):
    """Prunes ``amount`` entries chosen at random."""

    PRUNING_TYPE = "unstructured"

    def __init__(self, amount):
        _n_to_prune(amount, 1 if isinstance(amount, float) else amount)
        self.amount = amount

    def compute_mask(self, t, default_mask):
        from ... import rand, topk
        k = _n_to_prune(self.amount, t.numel())
        mask = default_mask.clone()
        if k:
            idx = topk(rand(t.shape).view(-1), k).indices
            mask.view(-1)[idx] = 0
        return mask

    @classmethod
    def apply(cls, module, name, amount):
        return super().apply(module, name, amount=amount)


class L1Unstructured(BasePruningMethod):
    """Prunes the ``amount`` entries of smallest absolute value."""

    PRUNING_TYPE = "unstructured"

    def __init__(self, amount):
        _n_to_prune(amount, 1 if isinstance(amount, float) else amount)
        self.amount = amount

    def compute_mask(self, t, default_mask):
        from ... import topk
        k = _n_to_prune(self.amount, t.numel())
        mask = default_mask.clone()
        if k:
            idx = topk(t.abs().view(-1), k, largest=False).indices
            mask.view(-1)[idx] = 0
        return mask

    @classmethod
    def apply(cls, module, name, amount, importance_scores=None):
        return super().apply(module, name, amount=amount, importance_scores=importance_scores)


def _structured_mask(t, dim, keep_idx, default_mask):
    from ... import zeros_like
    mask = zeros_like(default_mask)
    index = [slice(None)] * t.dim()
    index[dim] = keep_idx
    mask[tuple(index)] = 1
    return mask * default_mask


class RandomStructured(BasePruningMethod):
    """Prunes ``amount`` whole slices along ``dim``, chosen at random."""

    PRUNING_TYPE = "structured"

    def __init__(self, amount, dim=-1):
        self.amount, self.dim = amount, dim

    def compute_mask(self, t, default_mask):
        from ... import rand, topk
        n = t.shape[self.dim]
        k = _n_to_prune(self.amount, n)
        keep = topk(rand(n), n - k).indices
        return _structured_mask(t, self.dim, keep, default_mask)

    @classmethod
    def apply(cls, module, name, amount, dim=-1):
        return super().apply(module, name, amount=amount, dim=dim)


class LnStructured(BasePruningMethod):
    """Prunes the ``amount`` slices along ``dim`` of smallest ``n``-norm."""

    PRUNING_TYPE = "structured"

    def __init__(self, amount, n, dim=-1):
        self.amount, self.n, self.dim = amount, n, dim

    def compute_mask(self, t, default_mask):
        from ... import topk
        d = self.dim % t.dim()
        size = t.shape[d]
        k = _n_to_prune(self.amount, size)
        other = [i for i in range(t.dim()) if i != d]
        norms = t.norm(p=self.n, dim=other) if other else t.abs()
        keep = topk(norms, size - k).indices
        return _structured_mask(t, d, keep, default_mask)

    @classmethod
    def apply(cls, module, name, amount, n, dim, importance_scores=None):
        return super().apply(module, name, amount=amount, n=n, dim=dim,
                             importance_scores=importance_scores)


class CustomFromMask(BasePruningMethod):
    """Prunes where the given ``mask`` is 0."""

    PRUNING_TYPE = "global"

    def __init__(self, mask):
        self.mask = mask

    def compute_mask(self, t, default_mask):
        return default_mask * self.mask.to(dtype=default_mask.dtype)

    @classmethod
    def apply(cls, module, name, mask):
        return super().apply(module, name, mask=mask)


def identity(module, name):
    """Reparametrize ``module.name`` with a mask of ones."""
    Identity.apply(module, name)
    return module


def random_unstructured(module, name, amount):
    """Prune ``amount`` random entries of ``module.name``."""
    RandomUnstructured.apply(module, name, amount)
    return module


def l1_unstructured(module, name, amount, importance_scores=None):
    """Prune the ``amount`` smallest-magnitude entries of ``module.name``."""
    L1Unstructured.apply(module, name, amount=amount, importance_scores=importance_scores)
    return module


def random_structured(module, name, amount, dim):
    """Prune ``amount`` random slices of ``module.name`` along ``dim``."""
    RandomStructured.apply(module, name, amount, dim)
    return module


def ln_structured(module, name, amount, n, dim, importance_scores=None):
    """Prune the ``amount`` slices of ``module.name`` along ``dim`` of smallest ``n``-norm."""
    LnStructured.apply(module, name, amount, n, dim, importance_scores=importance_scores)
    return module


def custom_from_mask(module, name, mask):
    """Prune ``module.name`` where ``mask`` is 0."""
    CustomFromMask.apply(module, name, mask)
    return module


def global_unstructured(parameters, pruning_method, importance_scores=None, **kwargs):
    """Prune the parameters ``[(module, name), ...]`` together: the method's mask is computed
    over all their entries at once (``amount`` counts the total)."""
    from ... import cat
    parameters = list(parameters)
    importance_scores = importance_scores or {}
    scores, masks = [], []
    for module, name in parameters:
        t = importance_scores.get((module, name), getattr(module, name))
        scores.append(t.detach().reshape(-1))
        m = getattr(module, name + "_mask", None)
        masks.append(m.reshape(-1) if m is not None else t.new_ones(t.numel()))
    container = PruningContainer()
    container._tensor_name = "temp"
    method = pruning_method(**kwargs)
    method._tensor_name = "temp"
    if method.PRUNING_TYPE != "unstructured":
        raise TypeError(f'Only "unstructured" PRUNING_TYPE supported for the `pruning_method`. '
                        f"Found method {pruning_method} of type {method.PRUNING_TYPE}")
    container.add_pruning_method(method)
    full = container.compute_mask(cat(scores), default_mask=cat(masks))
    offset = 0
    for module, name in parameters:
        n = getattr(module, name).numel()
        custom_from_mask(module, name, full[offset:offset + n].view(getattr(module, name).shape))
        offset += n


def remove(module, name):
    """Make ``module.name``'s pruning permanent (the parameter holds ``orig * mask``)."""
    for k, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, BasePruningMethod) and hook._tensor_name == name:
            hook.remove(module)
            del module._forward_pre_hooks[k]
            return module
    raise ValueError(f"Parameter '{name}' of module {module} has to be pruned before pruning "
                     f"can be removed")


def is_pruned(module):
    """Whether any submodule of ``module`` has a pruning hook."""
    return any(isinstance(h, BasePruningMethod) for m in module.modules()
               for h in m._forward_pre_hooks.values())



