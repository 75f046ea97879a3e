"""The profiler: op events, backward nodes, optimizer/DataLoader/module ranges, averages,
the table, schedules, Chrome traces and memory, with PyTorch's names."""

import gzip
import json
import os

import numpy as np
import pytest

import ember
from ember.autograd import engine, graph
from ember.profiler import ProfilerAction, ProfilerActivity, profile, record_function, schedule

torch = pytest.importorskip("torch")


def step_program(lib):
    """A forward, backward and optimizer step over a DataLoader, in either library."""
    data = lib.utils.data.TensorDataset(lib.tensor(np.ones((4, 3), np.float32)))
    loader = lib.utils.data.DataLoader(data, batch_size=2)
    w = lib.ones(3, requires_grad=True)
    opt = lib.optim.SGD([w], lr=0.1)
    for (x,) in loader:
        loss = (x * w).sum()
        loss.backward()
        opt.step()


def names(prof):
    return {e.name for e in prof.events()}


def test_names_match_pytorch():
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step_program(ember)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as tprof:
        step_program(torch)
    got, want = names(prof), names(tprof)
    for name in ("aten::mul", "aten::sum", "Optimizer.step#SGD.step",
                 "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__",
                 "autograd::engine::evaluate_function: MulBackward0",
                 "autograd::engine::evaluate_function: SumBackward0"):
        assert name in want, name  # the oracle has it ...
        assert name in got, name   # ... and so do we
    backward = {n for n in got if n.startswith("autograd::engine")}
    assert backward <= want
    counts = {e.key: e.count for e in prof.key_averages()}
    tcounts = {e.key: e.count for e in tprof.key_averages()}
    # (aten::mul differs: PyTorch's backward and SGD dispatch muls; ember's run on arrays)
    for name in ("Optimizer.step#SGD.step", "autograd::engine::evaluate_function: MulBackward0",
                 "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__"):
        assert counts[name] == tcounts[name], name
    assert counts["aten::mul"] == 2  # one per batch


def test_nothing_left_behind():
    with profile() as prof:
        ember.ones(2) + 1
    assert graph._MODES == [] and engine._PROFILER[0] is None
    from ember.utils.data import dataloader
    assert dataloader._SingleProcessDataLoaderIter.__next__.__name__ == "__next__"
    with record_function("outside"):  # no profiler: a no-op
        ember.ones(2) * 2
    assert "aten::add" in names(prof)


def test_record_shapes_and_nesting():
    a, b = ember.randn(2, 3), ember.randn(2, 3)

    @record_function("decorated")
    def f(x, y):
        return x * y

    with profile(record_shapes=True) as prof:
        with record_function("outer"):
            f(a, b)
            ember.mm(a, b.t())
    evs = prof.events()
    outer = next(e for e in evs if e.name == "outer")
    deco = next(e for e in evs if e.name == "decorated")
    mul = next(e for e in evs if e.name == "aten::mul")
    assert mul.cpu_parent is deco and deco.cpu_parent is outer
    assert mul.input_shapes == [[2, 3], [2, 3]]
    assert next(e for e in evs if e.name == "aten::matmul").input_shapes[0] == [2, 3]
    kids = sum(c.cpu_time_total for c in outer.cpu_children)
    assert outer.self_cpu_time_total == pytest.approx(outer.cpu_time_total - kids)
    assert 0 <= outer.self_cpu_time_total <= outer.cpu_time_total
    for e in evs:
        assert e.time_range[0] <= e.time_range[1]
        if e.cpu_parent is not None:
            assert e.cpu_parent.time_range[0] <= e.time_range[0]
            assert e.time_range[1] <= e.cpu_parent.time_range[1]
    by_shape = prof.key_averages(group_by_input_shape=True)
    assert any(r.key == "aten::mul" and r.input_shapes == [[2, 3], [2, 3]] for r in by_shape)


def test_table_sort_and_row_limit():
    x = ember.randn(64, 64)
    with profile() as prof:
        for _ in range(3):
            y = x @ x
        y.relu()
    avgs = prof.key_averages()
    assert {e.key: e.count for e in avgs}["aten::matmul"] == 3
    table = avgs.table(sort_by="self_cpu_time_total", row_limit=1)
    lines = table.splitlines()
    for col in ("Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg",
                "# of Calls"):
        assert col in lines[1]
    assert "Self CPU time total:" in lines[-1]
    assert len(lines) == 6  # rule, header, rule, one row, rule, total
    rows = sorted(avgs, key=lambda e: e.self_cpu_time_total, reverse=True)
    assert rows[0].key in lines[3]
    with pytest.raises(AttributeError):
        avgs.table(sort_by="no_such_key")


def validate_chrome_trace(doc):
    """The subset of the Trace Event Format that chrome://tracing and Perfetto need."""
    assert isinstance(doc, dict) and isinstance(doc["traceEvents"], list)
    assert doc.get("displayTimeUnit", "ms") in ("ms", "ns")
    for ev in doc["traceEvents"]:
        assert isinstance(ev["name"], str) and ev["ph"] in ("X", "i", "M", "B", "E")
        assert isinstance(ev["pid"], (int, str)) and isinstance(ev["tid"], (int, str))
        if ev["ph"] == "M":
            assert isinstance(ev["args"], dict)
            continue
        assert isinstance(ev["ts"], (int, float)) and ev["ts"] >= 0
        if ev["ph"] == "X":
            assert isinstance(ev["dur"], (int, float)) and ev["dur"] >= 0
            assert isinstance(ev.get("cat", ""), str)
        if ev["ph"] == "i":
            assert ev.get("s", "t") in ("g", "p", "t")
        assert isinstance(ev.get("args", {}), dict)


def test_export_chrome_trace(tmp_path):
    lin = ember.nn.Linear(3, 2)
    with profile(record_shapes=True, profile_memory=True, with_modules=True) as prof:
        lin(ember.randn(4, 3)).sum().backward()
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    doc = json.loads(path.read_text())
    validate_chrome_trace(doc)
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    lin_ev = next(e for e in xs if e["name"] == "aten::linear")
    assert lin_ev["args"]["Input Dims"] == [[4, 3], [2, 3], [2]]
    assert lin_ev["args"]["Input type"][0] == "float"
    assert any(e["name"] == "nn.Module: Linear_0" for e in xs)
    assert any(e["name"] == "[memory]" for e in doc["traceEvents"])
    # X events on one thread nest properly (what the viewers draw as a flame chart)
    spans = sorted(((e["ts"], e["ts"] + e["dur"]) for e in xs), key=lambda s: (s[0], -s[1]))
    stack = []
    for a, b in spans:
        while stack and stack[-1] <= a:
            stack.pop()
        assert not stack or b <= stack[-1] + 1e-3
        stack.append(b)
    gz = tmp_path / "trace.json.gz"
    prof.export_chrome_trace(str(gz))
    validate_chrome_trace(json.loads(gzip.decompress(gz.read_bytes())))
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_our_trace_validator_accepts_pytorch_traces(tmp_path):
    with torch.profiler.profile() as tprof:
        torch.ones(3) * 2
    p = tmp_path / "t.json"
    tprof.export_chrome_trace(str(p))
    validate_chrome_trace(json.loads(p.read_text()))


def test_schedule_matches_pytorch():
    kw = dict(wait=1, warmup=1, active=2, repeat=2, skip_first=1)
    ours, theirs = schedule(**kw), torch.profiler.schedule(**kw)
    assert [ours(i).name for i in range(14)] == [theirs(i).name for i in range(14)]


def test_schedule_steps_and_trace_handler(tmp_path):
    seen = []
    x = ember.ones(3)
    with profile(schedule=schedule(wait=1, warmup=1, active=2, repeat=1),
                 on_trace_ready=lambda p: seen.append(sorted(
                     {e.name for e in p.events() if e.name.startswith("ProfilerStep")}))) as p:
        for step in range(6):
            x = x * (step + 1)
            p.step()
    assert seen == [["ProfilerStep#2", "ProfilerStep#3"]]
    assert p.current_action == ProfilerAction.NONE
    assert {e.key: e.count for e in p.key_averages()}["aten::mul"] == 2

    d = tmp_path / "tb"
    with profile(schedule=schedule(wait=0, warmup=0, active=1, repeat=2),
                 on_trace_ready=ember.profiler.tensorboard_trace_handler(str(d), "w0")) as p:
        for _ in range(3):
            ember.ones(2).exp()
            p.step()
    files = sorted(os.listdir(d))
    assert len(files) == 2 and all(f.startswith("w0.") and f.endswith(".pt.trace.json")
                                   for f in files)
    for f in files:
        validate_chrome_trace(json.loads((d / f).read_text()))


def test_profile_memory_and_timeline(tmp_path):
    x = ember.randn(100, 100)
    with profile(profile_memory=True) as prof:
        y = x * 2
        del y
        z = x + 1  # noqa: F841
    evs = prof.events()
    mul = next(e for e in evs if e.name == "aten::mul")
    assert mul.self_cpu_memory_usage == 100 * 100 * 4
    avgs = prof.key_averages()
    table = avgs.table(sort_by="self_cpu_memory_usage", row_limit=5)
    assert "CPU Mem" in table and "39.06 Kb" in table
    out = tmp_path / "mem.json"
    prof.export_memory_timeline(str(out))
    times, sizes = json.loads(out.read_text())
    assert len(times) == len(sizes) >= 3
    assert max(sizes) >= 40000 and sizes[1] - sizes[0] == -40000  # y freed before z made
    prof.export_memory_timeline(str(tmp_path / "mem.html"))
    assert "<svg" in (tmp_path / "mem.html").read_text()
    with profile() as p2:
        pass
    with pytest.raises(RuntimeError, match="profile_memory"):
        p2.export_memory_timeline(str(out))


def test_with_stack_groups_by_source():
    with profile(with_stack=True) as prof:
        ember.ones(2).neg()
    rows = prof.key_averages(group_by_stack_n=2)
    neg = next(r for r in rows if r.key == "aten::neg")
    assert "test_profiler.py" in neg.stack[0]
    assert "Source Location" in rows.table(row_limit=3)


def test_autograd_profiler_alias():
    from ember.autograd.profiler import profile as aprofile
    with aprofile(record_shapes=True) as prof:
        with ember.autograd.profiler.record_function("label"):
            ember.ones(2) * 3
    assert "label" in {e.name for e in prof.function_events}
    assert "aten::mul" in prof.table(sort_by="cpu_time_total")
    with aprofile(enabled=False) as off:
        pass
    assert off.enabled is False


def test_profiler_sees_autocast_casts():
    lin = ember.nn.Linear(4, 4)
    with profile() as prof, ember.autocast("cpu"):
        lin(ember.randn(2, 4))
    assert {"aten::linear", "aten::to"} <= names(prof)


def test_nested_sessions():
    x = ember.ones(2, requires_grad=True)
    with profile() as outer:
        (x * 2).sum().backward()
        with profile() as inner:
            with record_function("in"):
                (x * 3).sum().backward()
        (x * 4).sum().backward()
    assert "in" in names(inner) and "in" not in names(outer)
    counts = {e.key: e.count for e in outer.key_averages()}
    assert counts["aten::mul"] == 3  # the outer session saw the inner ops too
    # the engine reports to the innermost session only; the outer one has it back afterwards
    assert counts["autograd::engine::evaluate_function: MulBackward0"] == 2
    assert {e.key: e.count for e in inner.key_averages()}[
        "autograd::engine::evaluate_function: MulBackward0"] == 1
    assert graph._MODES == [] and engine._PROFILER[0] is None
