"""The benchmark runner still runs, one process per framework (a smoke test: it asserts no
speed)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.run import WORKLOADS, markdown, run  # noqa: E402


def test_runner_rows_and_markdown():
    rows = run(only=["add (16,)", "sum 16M"], quick=True, memory=False, repeat=1, passes=1)
    names = [r["workload"] for r in rows]
    assert "add (16,)" in names and "sum 16M" in names
    big = next(r for r in rows if r["workload"] == "sum 16M")
    assert big["ember_s"] > 0 and big["numpy_s"] > 0 and big["vs_numpy"] > 0
    assert big["ember_cpu_s"] > 0
    table = markdown(rows)
    assert table.count("\n") == len(rows) + 1 and "| sum 16M |" in table


def test_numpy_baselines_run_in_their_own_process():
    from benchmarks.run import _time_in_process
    r = _time_in_process("numpy", ["sum 16M", "add (16,)"], True, None, 1)
    assert list(r) == ["sum 16M"] and r["sum 16M"]["s"] > 0


def test_training_workloads_run_in_ember():
    import ember
    for name in ("MLP 784-512-512-10 train step", "LSTM 2-layer train step"):
        step, _ = WORKLOADS[name](ember, True)
        step()
