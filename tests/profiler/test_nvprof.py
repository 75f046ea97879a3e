"""Reading nvprof traces (``autograd.profiler.load_nvprof``): a SQLite file with nvprof's
tables, written here, read by ember and by PyTorch (its reader is plain Python and runs on
the CPU): the same ranges, times, demangled names and kernels."""

import sqlite3

import pytest

import ember

torch = pytest.importorskip("torch")


def _trace(path):
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE StringTable (_id_ INTEGER PRIMARY KEY, value TEXT);
        CREATE TABLE CUPTI_ACTIVITY_KIND_MARKER (id INTEGER, name INTEGER, timestamp INTEGER);
        CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (_id_ INTEGER PRIMARY KEY, cbid INTEGER,
            start INTEGER, "end" INTEGER, correlationId INTEGER);
        CREATE TABLE CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL (_id_ INTEGER PRIMARY KEY,
            start INTEGER, "end" INTEGER, name TEXT, correlationId INTEGER);
    """)
    con.executemany("INSERT INTO StringTable VALUES (?, ?)", [
        (1, "aten::addmm"), (2, "_ZN2at6native5addmmEv"),
        (3, "aten::relu, seq = 3"), (4, "_Z3foov"), (5, "plain name")])
    # ranges: (id, name) at start, (id, 0) at end; out of order to check the sorting
    con.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_MARKER VALUES (?, ?, ?)", [
        (7, 3, 500), (7, 0, 900), (5, 1, 100), (5, 0, 400), (6, 2, 410), (6, 0, 450),
        (8, 4, 950), (8, 0, 990), (9, 5, 1000), (9, 0, 1010)])
    con.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?, ?, ?, ?, ?)", [
        (1, 211, 120, 130, 11), (2, 211, 200, 210, 12), (3, 211, 600, 610, 13)])
    con.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL VALUES (?, ?, ?, ?, ?)",
                    [(1, 140, 190, "gemm_kernel", 11), (2, 215, 260, "bias_kernel", 12),
                     (3, 620, 700, "relu_kernel", 13)])
    con.commit()
    con.close()


def test_nvprof_trace_reads_as_pytorch(tmp_path):
    path = str(tmp_path / "trace.nvvp")
    _trace(path)
    want = torch.autograd.profiler.load_nvprof(path)
    got = ember.autograd.profiler.load_nvprof(path)
    assert type(got).__name__ == "EventList" and len(got) == len(want) == 5
    for g, w in zip(got, want):
        assert (g.id, g.name) == (w.id, w.name)
        assert (g.time_range.start, g.time_range.end) == (w.time_range.start, w.time_range.end)
        assert g.time_range.elapsed_us() == w.time_range.elapsed_us()
        assert [tuple(k) for k in g.kernels] == [tuple(k) for k in w.kernels]
    assert got[1].name == "at::native::addmm()"  # demangled, as PyTorch


def test_nvprof_trace_with_a_foreign_launch_raises(tmp_path):
    path = str(tmp_path / "bad.nvvp")
    _trace(path)
    con = sqlite3.connect(path)
    con.execute("UPDATE CUPTI_ACTIVITY_KIND_RUNTIME SET cbid = 13 WHERE _id_ = 1")
    con.commit()
    con.close()
    with pytest.raises(AssertionError, match="cbid"):
        ember.autograd.profiler.parse_nvprof_trace(path)
