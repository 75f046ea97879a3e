"""``ember.special``: PyTorch's special-function namespace.

Most entries are the elementwise ops under their SciPy-style names; the ops (forward on
arrays, backward in ember ops) live in ``ember/ops/elementwise.py``, with forward values
from SciPy when it is installed and NumPy series otherwise (``ember/ops/_special.py``).
"""

from __future__ import annotations

from .ops import elementwise as _E

__all__ = [
    "entr", "erfcx", "ndtr", "ndtri", "log_ndtr", "sinc", "expit", "logit", "softmax",
    "log_softmax", "zeta", "gammaln", "erf", "erfc", "erfinv", "expm1", "exp2", "log1p",
    "round", "i0", "i0e", "i1", "i1e", "multigammaln", "psi", "digamma", "polygamma", "xlogy",
    "xlog1py",
] + _E._POLYNOMIALS + _E._BESSEL_NAMES + ["gammainc", "gammaincc"]

entr = _E.special_entr
erfcx = _E.special_erfcx
ndtr = _E.special_ndtr
ndtri = _E.special_ndtri
log_ndtr = _E.special_log_ndtr
sinc = _E.sinc
expit = _E.sigmoid
logit = _E.logit
zeta = _E.special_zeta
gammaln = _E.lgamma
erf = _E.erf
erfc = _E.erfc
erfinv = _E.erfinv
expm1 = _E.expm1
exp2 = _E.exp2
log1p = _E.log1p
round = _E.round
i0 = _E.i0
i0e = _E.special_i0e
i1 = _E.special_i1
i1e = _E.special_i1e
psi = digamma = _E.digamma
polygamma = _E.polygamma
xlogy = _E.xlogy
xlog1py = _E.special_xlog1py
gammainc = _E.igamma
gammaincc = _E.igammac
for _name in _E._POLYNOMIALS:
    globals()[_name] = getattr(_E, _name)
for _name in _E._BESSEL_NAMES:
    globals()[_name] = getattr(_E, "special_" + _name)
del _name


def multigammaln(input, p, *, out=None):
    """Multivariate log-gamma of dimension ``p`` (``mvlgamma``)."""
    return _E.mvlgamma(input, p, out=out)


def softmax(input, dim, *, dtype=None):
    """Softmax along ``dim`` (as ``ember.softmax``)."""
    from .ops import nn as _nn
    return _nn.softmax(input, dim, dtype)


def log_softmax(input, dim, *, dtype=None):
    """Log-softmax along ``dim`` (as ``ember.log_softmax``)."""
    from .ops import nn as _nn
    return _nn.log_softmax(input, dim, dtype)
