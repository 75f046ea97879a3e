"""Shared helpers: translate ember's quantization names into torch's for the oracle."""

import numpy as np

import ember


def tdt(torch, dt):
    """torch's dtype (or qscheme) of the same name as ember's ``dt``."""
    return getattr(torch, dt.name if hasattr(dt, "name") else str(dt).split(".")[-1])


def tq(torch, obj):
    """torch's object for an ember dtype/qscheme."""
    name = repr(obj).split(".")[-1]
    return getattr(torch, name)


def to_t(torch, x):
    return torch.from_numpy(np.array(x.detach().numpy()))


def to_e(x):
    return ember.from_numpy(np.array(x.detach().numpy()))
