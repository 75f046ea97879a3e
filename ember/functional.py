"""``torch.functional``: the functions PyTorch defines in Python, at PyTorch's path."""

import ember as _ember

_NAMES = ("atleast_1d", "atleast_2d", "atleast_3d", "broadcast_shapes", "broadcast_tensors",
          "cartesian_prod", "block_diag", "cdist", "chain_matmul", "einsum", "istft", "lu",
          "norm", "meshgrid", "pca_lowrank", "split", "stft", "svd_lowrank", "tensordot",
          "unique", "unique_consecutive", "unravel_index")

for _n in _NAMES:
    if hasattr(_ember, _n):
        globals()[_n] = getattr(_ember, _n)
__all__ = [_n for _n in _NAMES if _n in globals()]
del _n
