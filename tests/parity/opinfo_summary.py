"""How far ember gets through PyTorch's OpInfo samples.

    python -m tests.parity.opinfo_summary                 # the summary
    python -m tests.parity.opinfo_summary -v abs add      # per-dtype detail for some entries
    python -m tests.parity.opinfo_summary --write-xfails  # regenerate opinfo_xfails.py

Runs the same checks as ``test_opinfo.py`` and prints: entries matched (ember has the op),
entries passing all their float32/float64 samples (values and gradients), samples passed, and
the expected failures grouped by reason.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import time
import warnings

from .test_opinfo import (entry_dtypes, entry_key, entry_reason, ember_callable, is_random, op_db,
                          run_entry)

XFAIL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "opinfo_xfails.py")


# Diagnosed causes, prefixed to the generated reason of the entries they name (``key`` for all
# dtypes, ``key|dtype``, or ``key|int`` for the integer dtypes): the generated text says what
# failed, these say why.
NOTES = {
    "as_strided.partial_views": "harness: the sample is a view into a larger storage; ember gets "
                                "a contiguous copy, so as_strided reads other memory",
    "nn.functional.triplet_margin_with_distance_loss": "harness: the sample passes a torch.nn "
                                                       "module as distance_function",
    "linalg.eig": "eigenvectors are unique only up to phase; LAPACK picks differently here",
    "linalg.eigh": "eigenvectors are unique only up to sign; LAPACK picks differently here",
    "topk|int": "indices of tied values differ (PyTorch leaves the choice unspecified)",
    "kthvalue|int": "index of a tied value differs (PyTorch leaves the choice unspecified)",
    "mode": "index of the mode among ties differs",
    "matrix_exp|float32": "float32 cancellation: entries near 5e7, absolute error ~30 on the "
                          "small ones",
    "masked_fill": "out-of-place masked_fill does not broadcast input up to a larger mask",
    "gather": "empty index with fewer dims than input is rejected (PyTorch allows it)",
    "tensordot": "PyTorch broadcasts size-1 contracted dims; ember requires equal sizes",
    "linalg.vector_norm": "dim=0 on a 0-d tensor (PyTorch wraps it)",
    "linalg.vander": "0-d input: PyTorch returns (1, N), ember (N,)",
    "arange|int64": "float bounds with dtype=int64: PyTorch truncates start/end/step to int64 "
                    "before sizing the result (it does not for int32)",
    "nn.functional.batch_norm": "empty 1-D input: PyTorch accepts it",
    "nextafter": "ember's nextafter is not differentiable; PyTorch's is",
    "linalg.lstsq": "ember's lstsq solution is not differentiable",
    "linalg.lstsq.grad_oriented": "ember's lstsq solution is not differentiable",
    "combinations": "empty result (fewer elements than r) does not require grad",
    "index_fill": "gradient of the 0-d value tensor differs",
    "cholesky_inverse": "non-triangular sample factor: PyTorch's backward treats the whole "
                        "matrix as the factor, ember differentiates the triangle it reads "
                        "(they agree on triangular inputs)",
    "cholesky_solve": "non-triangular sample factor: PyTorch's backward treats the whole "
                      "matrix as the factor, ember differentiates the triangle it reads",
    "addmv|int": "float alpha/beta with integer tensors: PyTorch truncates the scalars to "
                   "int, ember promotes to float",
    "addbmm|int": "float alpha/beta with integer tensors: PyTorch truncates the scalars to "
                    "int, ember promotes to float",
    "baddbmm|int": "float alpha/beta with integer tensors: PyTorch truncates the scalars to "
                     "int, ember promotes to float",
    "addr|bool": "bool tensors: PyTorch computes with logical and/or, ember in int64",
    "index_add": "bool/int32/uint8 inputs: ember accumulates in int64 and returns int64",
    "index_copy": "bool inputs: ember returns int64",
    "scatter_add": "bool/int32/uint8 inputs: ember accumulates in int64 and returns int64",
    "einsum": "int32/uint8 inputs summed over an index: PyTorch returns int64 (as sum does), "
              "ember keeps the input dtype",
    "full|uint8": "negative fill value for uint8: PyTorch wraps around, NumPy raises",
    "full_like|uint8": "negative fill value for uint8: PyTorch wraps around, NumPy raises",
    "scalar_tensor|uint8": "negative value for uint8: PyTorch wraps around, NumPy raises",
    "zero_": "the entry calls torch.zero_(x): ember has only the Tensor method",
    "linalg.norm.subgradients_at_zero": "gradient at x = 0 is NaN in ember; PyTorch uses the "
                                        "subgradient 0",
    "scatter_reduce.amax|bool": "bool amax with include_self=False: ember returns True where "
                                "PyTorch keeps False",
    "polygamma.polygamma_n_0|float32": "float32 next to a pole (x = -5.96): relative error 1e-5",
    "special.polygamma.special_polygamma_n_0|float32": "float32 next to a pole (x = -5.96): "
                                                       "relative error 1e-5",
    "nn.functional.conv_transpose3d|float32": "float32 summation order: relative error ~2e-5",
    "nn.functional.local_response_norm|int64": "float32 result: relative error ~3e-5",
    "__rpow__|int": "integer base to a negative integer tensor power: PyTorch truncates "
                      "(2 ** -1 == 0), NumPy raises",
}


def _category(results):
    """The first failure's category without its message, for grouping."""
    reason = next(r.reason for r in results if r.status == "fail")
    match = re.match(r".*?(raises \w+|NotImplementedError)", reason)
    return match.group(0) if match else reason


def collect(names=()):
    """Per entry key: None if ember lacks the op, else {dtype: (results, seconds)}."""
    out = {}
    for op in op_db():
        key = entry_key(op)
        if names and key not in names and op.name not in names:
            continue
        fn = ember_callable(op)
        if fn is None:
            out[key] = (op, None)
            continue
        per_dtype = {}
        for dtype in entry_dtypes(op):
            start = time.perf_counter()
            results = run_entry(op, dtype, fn)
            per_dtype[dtype] = (results, time.perf_counter() - start)
        out[key] = (op, per_dtype)
    return out


def xfail_table(data):
    """{key or key|dtype: reason} for every missing entry and every failing (entry, dtype)."""
    table = {}
    for key, (op, per_dtype) in data.items():
        if per_dtype is None:
            table[key] = f"ember has no {op.name}"
            continue
        for dtype, (results, _) in per_dtype.items():
            if any(r.status == "fail" for r in results):
                note = (NOTES.get(f"{key}|{dtype}") or NOTES.get(key)
                        or (NOTES.get(f"{key}|int") if dtype.startswith(("int", "uint")) else None))
                reason = entry_reason(results)
                table[f"{key}|{dtype}"] = f"{note} [{reason}]" if note else reason
    return table


def write_xfails(table):
    lines = ['"""Expected failures of test_opinfo.py, with reasons.',
             "",
             "Generated by ``python -m tests.parity.opinfo_summary --write-xfails``: a key is an",
             "OpInfo entry (``name`` or ``name.variant``), alone when ember lacks the op, else with",
             "``|dtype``; the reason is the first failing sample's category and the count of",
             'failing samples."""',
             "",
             "XFAILS = {"]
    for key in sorted(table):
        lines.append(f"    {key!r}: {table[key]!r},")
    lines.append("}")
    with open(XFAIL_FILE, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="only these entries (name or name.variant)")
    parser.add_argument("-v", "--verbose", action="store_true", help="per-dtype detail")
    parser.add_argument("--write-xfails", action="store_true", help="regenerate the xfail table")
    parser.add_argument("--slowest", type=int, default=0, help="list the N slowest entries")
    parser.add_argument("--missing", action="store_true", help="list the ops ember lacks")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the ops' own warnings (deprecations, dof <= 0) are noise
    start = time.perf_counter()
    data = collect(set(args.names))
    elapsed = time.perf_counter() - start

    matched = {k: v for k, v in data.items() if v[1] is not None}
    full_pass, counts = [], collections.Counter()
    for key, (op, per_dtype) in matched.items():
        float_runs = [res for d, (res, _) in per_dtype.items() if d in ("float32", "float64")]
        if float_runs and all(not any(r.status == "fail" for r in res)
                              and any(r.status == "pass" for r in res) for res in float_runs):
            full_pass.append(key)
        for dtype, (results, secs) in per_dtype.items():
            for r in results:
                counts[r.status] += 1
                counts["grads"] += r.grads_checked
                counts["noncontiguous"] += r.noncontiguous
            if args.verbose:
                fails = [r for r in results if r.status == "fail"]
                state = entry_reason(results) if fails else "ok"
                print(f"{key}|{dtype}: {state} [{secs:.2f}s]")
                for r in fails[:3]:
                    print(f"    {r.detail}")
    table = xfail_table(data)
    print(f"OpInfo entries: {len(data)}; matched by ember: {len(matched)}")
    n_random = sum(is_random(data[k][0]) for k in full_pass)
    print(f"entries passing all float32/float64 samples (values and grads): {len(full_pass)} "
          f"({n_random} of them random or uninitialised: compared by shape and dtype only)")
    print(f"samples: {counts['pass']} passed ({counts['grads']} with gradients checked), "
          f"{counts['fail']} failed, {counts['skip']} skipped; {counts['noncontiguous']} had "
          "non-contiguous inputs (run as contiguous copies)")
    print(f"expected failures: {len(table)} ({len(data) - len(matched)} missing ops, "
          f"{len(table) - len(data) + len(matched)} failing entry/dtype pairs)")
    by_cat = collections.Counter(_category(res) for _, per_dtype in matched.values()
                                 for res, _ in per_dtype.values()
                                 if any(r.status == "fail" for r in res))
    for cat, n in by_cat.most_common(25):
        print(f"    {n:4d}  {cat}")
    if args.missing:
        print("missing:", " ".join(sorted({op.name for op, res in data.values() if res is None})))
    if args.slowest:
        times = sorted(((sum(s for _, s in v[1].values()), k) for k, v in matched.items()),
                       reverse=True)
        for secs, key in times[:args.slowest]:
            print(f"    {secs:6.2f}s  {key}")
    print(f"({elapsed:.1f} s)")
    if args.write_xfails:
        if args.names:
            raise SystemExit("--write-xfails needs the full run (no names)")
        write_xfails(table)
        print(f"wrote {len(table)} entries to {XFAIL_FILE}")


if __name__ == "__main__":
    main()
