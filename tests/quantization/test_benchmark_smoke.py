"""benchmarks/quantization.py still runs (one ember int8 child process; asserts no speed)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))

from benchmarks import quantization as bq  # noqa: E402


def test_int8_child_process_runs():
    for work in ("mlp", "lstm"):
        code = bq._CHILD.format(root=bq.ROOT, fw="ember", prec="int8", work=work, batch=2,
                                quick=True, threads=1)
        out = bq._run(code, threads=1, timeout=300)
        wall, cpu = (float(v) for v in out.split("RESULT")[1].split())
        assert wall > 0 and cpu > 0
