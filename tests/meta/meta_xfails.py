"""OpInfo entries of test_meta_opinfo.py that do not give eager shapes on the meta device.

``META_DATA_DEPENDENT``: the output's shape (or the op itself) needs the tensor's values, so
on meta the op raises PyTorch's kind of error (``NotImplementedError``, or ``RuntimeError``
for ``.item()``), as PyTorch's meta kernels do; the test checks that each of these entries
raises on meta (never a silent wrong shape) and matches eagerly wherever it runs.

``META_XFAILS``: not supported yet (non-strict xfails, each with its reason). Regenerate the
reasons with ``python -m tests.meta.test_meta_opinfo --write``; entries of
``META_DATA_DEPENDENT`` are kept out of it."""

META_DATA_DEPENDENT = {
    'argwhere': 'the number of nonzero elements',
    'histogramdd': 'bin edges from the values\' range (PyTorch has no meta kernel for it '
                   'either: NotImplementedError)',
    'item': 'reads the value (PyTorch: "Tensor.item() cannot be called on meta tensors")',
    'linalg.lstsq': 'residuals are returned only where every matrix has full rank',
    'linalg.lstsq.grad_oriented': 'residuals are returned only where every matrix has full rank',
    'linspace.tensor_overload': 'start/end given as tensors are read as numbers',
    'logspace.tensor_overload': 'start/end given as tensors are read as numbers',
    'masked_select': 'the number of True elements of the mask',
    'narrow': 'a start given as a tensor is read as a number',
    'nonzero': 'the number of nonzero elements',
    'repeat_interleave': 'repeats given as a tensor: the output length is their sum',
    'tensor_split': 'split points given as a tensor are read as numbers',
    'to': 'a copy from meta to cpu has no data to copy (PyTorch raises the same)',
    'to_sparse': 'the number of nonzero elements',
    'unique': 'the number of distinct values',
    'unique_consecutive': 'the number of runs of equal values',
}

META_XFAILS = {}
