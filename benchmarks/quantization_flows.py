"""Quantization flows, measured: size and accuracy of quantized models against float32.

    python benchmarks/quantization_flows.py [--quick] [--only cnn,lstm,gpt,mlp]

* static int8 (graph mode: prepare_fx → calibrate → convert_fx) on the demo CNN
  (``ember.demo.build_model`` on the built-in digits): model size and test accuracy;
* dynamic int8 (``quantize_dynamic``) on a character LSTM language model: perplexity, and
  the time of a dynamic-int8 MLP / LSTM forward against float32 (batch 1 and 64);
* weight-only int8 / int4 (``quantize_``) on a small GPT: weight memory, perplexity,
  greedy-generation agreement with float32.

The functions are also used by ``tests/ao/quantization`` to check the claims on small data.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import io
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import ember  # noqa: E402
from ember import nn  # noqa: E402
from ember.nn import functional as F  # noqa: E402

TEXT = os.path.join(ROOT, "examples", "data", "sonnets.txt")


def _example(name):
    spec = importlib.util.spec_from_file_location(f"_qbench_{name}",
                                                  os.path.join(ROOT, "examples", name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _text_data():
    text = open(TEXT, encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    return ember.tensor([stoi[c] for c in text]), len(chars)


def _batches(data, block, batch, gen_seed, n):
    g = ember.Generator().manual_seed(gen_seed)
    split = int(len(data) * 0.9)
    for _ in range(n):
        starts = ember.randint(0, split - block - 1, (batch,), generator=g).tolist()
        yield (ember.stack([data[s:s + block] for s in starts]),
               ember.stack([data[s + 1:s + block + 1] for s in starts]))


def _state_bytes(model):
    """Bytes of the saved state dict (``ember.save`` to memory): the model's size on disk."""
    buf = io.BytesIO()
    ember.save(model.state_dict(), buf)
    return len(buf.getvalue())


# ---------------------------------------------------------------- weight-only on a tiny GPT
def train_tiny_gpt(steps=200, d=128, layers=2, block=64, batch=32, seed=0):
    """Train ``examples/tiny_gpt.py``'s GPT briefly; returns (model, data, vocab)."""
    gpt = _example("tiny_gpt")
    ember.manual_seed(seed)
    data, vocab = _text_data()
    model = gpt.GPT(vocab, block, d=d, heads=4, layers=layers)
    opt = ember.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    for x, y in _batches(data, block, batch, seed, steps):
        loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), data, vocab


def _perplexity(model, data, vocab, block=64, n_windows=24, with_top1=False):
    """Perplexity on held-out windows (the last 10% of the text); with ``with_top1`` also the
    model's next-token argmax at every position."""
    split = int(len(data) * 0.9)
    total, count, top1 = 0.0, 0, []
    stride = max((len(data) - split - block) // n_windows, 1)
    with ember.no_grad():
        for s in list(range(split, len(data) - block - 1, stride))[:n_windows]:
            x = data[s:s + block][None]
            y = data[s + 1:s + block + 1]
            out = model(x)
            logits = (out[0] if isinstance(out, tuple) else out).reshape(-1, vocab)
            total += float(F.cross_entropy(logits, y, reduction="sum"))
            count += block
            top1 += logits.argmax(-1).tolist()
    ppl = math.exp(total / count)
    return (ppl, top1) if with_top1 else ppl


def _greedy(model, prompt, n, block):
    idx = prompt
    with ember.no_grad():
        for _ in range(n):
            nxt = model(idx[:, -block:])[:, -1].argmax(-1, keepdim=True)
            idx = ember.cat([idx, nxt], dim=1)
    return idx[0, prompt.shape[1]:].tolist()


def _linear_weight_bytes(model):
    from ember.ao.quantization.quant_api import _WeightOnlyLinear
    total = 0
    for m in model.modules():
        if isinstance(m, _WeightOnlyLinear):
            total += m.weight_nbytes()
        elif isinstance(m, nn.Linear):
            total += m.weight.numel() * m.weight.element_size()
    return total


def eval_gpt_weight_only(model, data, vocab, n_gen=100, block=64, int4_group=None,
                         n_windows=24):
    """fp32 vs int8/int4 weight-only: Linear weight bytes ratio, perplexity, next-token top-1
    agreement with float32 (teacher-forced, on the held-out windows) and the number of greedy
    tokens generated before the first difference from float32."""
    from ember.ao.quantization import int4_weight_only, int8_weight_only, quantize_
    d = model.tok.embedding_dim
    group = int4_group or (128 if d % 128 == 0 else 64)
    prompt = data[int(len(data) * 0.9):][:16][None]
    base_bytes = _linear_weight_bytes(model)
    base_ppl, base_top1 = _perplexity(model, data, vocab, block, n_windows, True)
    base_gen = _greedy(model, prompt, n_gen, block)
    res = {"fp32": {"weight_ratio": 1.0, "ppl": base_ppl, "top1_agree": 1.0,
                    "gen_same_prefix": n_gen}}
    for name, cfg in (("int8", int8_weight_only()), ("int4", int4_weight_only(group))):
        q = copy.deepcopy(model)
        quantize_(q, cfg)
        ppl, top1 = _perplexity(q, data, vocab, block, n_windows, True)
        gen = _greedy(q, prompt, n_gen, block)
        same = next((i for i, (a, b) in enumerate(zip(gen, base_gen)) if a != b), n_gen)
        res[name] = {"weight_ratio": _linear_weight_bytes(q) / base_bytes, "ppl": ppl,
                     "top1_agree": sum(a == b for a, b in zip(top1, base_top1)) / len(top1),
                     "gen_same_prefix": same, "group_size": group if name == "int4" else None}
    return res


# ---------------------------------------------------------------- static int8 demo CNN
def train_demo_cnn(train_size=6000, test_size=2000, epochs=1, seed=0):
    """``ember.demo``'s CNN trained briefly on the built-in digits; (model, x_test, y_test,
    x_calib)."""
    from ember.demo import build_model
    from ember.vision.datasets import Digits
    ember.manual_seed(seed)
    xtr, ytr = Digits(train=True, size=train_size, seed=seed).tensors()
    xte, yte = Digits(train=False, size=test_size, seed=seed).tensors()
    model = build_model(nn)
    opt = ember.optim.Adam(model.parameters(), lr=2e-3)
    g = ember.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = ember.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), xte, yte, xtr[:512]


def _accuracy(model, x, y):
    with ember.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def static_int8_cnn(model, x_test, y_test, x_calib, backend="x86"):
    """Graph-mode static int8 (prepare_fx → calibrate → convert_fx, conv/linear+ReLU fused on
    the graph); returns sizes, accuracies and the int8 model."""
    from ember.ao.quantization import get_default_qconfig_mapping
    from ember.ao.quantization.quantize_fx import convert_fx, prepare_fx
    prepared = prepare_fx(model, get_default_qconfig_mapping(backend), (x_calib[:1],))
    with ember.no_grad():
        for i in range(0, len(x_calib), 128):
            prepared(x_calib[i:i + 128])
    q = convert_fx(prepared)
    return {"fp32_bytes": _state_bytes(model), "int8_bytes": _state_bytes(q),
            "fp32_acc": _accuracy(model, x_test, y_test), "int8_acc": _accuracy(q, x_test, y_test),
            "model": q}


# ---------------------------------------------------------------- dynamic int8 LSTM LM
class CharLSTM(nn.Module):
    def __init__(self, vocab, hidden=128, layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, 64)
        self.lstm = nn.LSTM(64, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x):
        return self.head(self.lstm(self.embed(x))[0])


def train_char_lstm(steps=150, hidden=128, block=64, batch=32, seed=0):
    ember.manual_seed(seed)
    data, vocab = _text_data()
    model = CharLSTM(vocab, hidden)
    opt = ember.optim.Adam(model.parameters(), lr=3e-3)
    for x, y in _batches(data, block, batch, seed, steps):
        loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), data, vocab


def dynamic_int8_lstm(model, data, vocab):
    from ember.ao.quantization import quantize_dynamic
    q = quantize_dynamic(model, {nn.Linear, nn.LSTM}, dtype=ember.qint8)
    return {"fp32_ppl": _perplexity(model, data, vocab), "int8_ppl": _perplexity(q, data, vocab),
            "fp32_bytes": _state_bytes(model), "int8_bytes": _state_bytes(q), "model": q}


def _time(fn, repeat=7, number=3):
    fn()
    best = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best.append((time.perf_counter() - t0) / number)
    best.sort()
    return best[len(best) // 2]


def dynamic_int8_timings(quick=False):
    """Median forward time of float32 vs dynamic-int8 MLP 784-512-512-10 and LSTM LM, batch 1
    and 64 (ember only; see the README for PyTorch's side)."""
    from ember.ao.quantization import quantize_dynamic
    ember.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                        nn.Linear(512, 10)).eval()
    lstm = CharLSTM(64, 256).eval()
    rows = []
    for name, model, make in (("MLP 784-512-512-10", mlp, lambda b: ember.randn(b, 784)),
                              ("LSTM LM h256 seq32", lstm,
                               lambda b: ember.randint(0, 64, (b, 32)))):
        q = quantize_dynamic(model, {nn.Linear, nn.LSTM}, dtype=ember.qint8)
        for b in (1, 64):
            x = make(b)
            with ember.no_grad():
                tf = _time(lambda: model(x), 3 if quick else 7)
                tqt = _time(lambda: q(x), 3 if quick else 7)
            rows.append({"workload": f"{name} batch {b}", "fp32_ms": tf * 1e3,
                         "int8_ms": tqt * 1e3, "ratio": tqt / tf})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="cnn,lstm,gpt,mlp")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    if "cnn" in only:
        model, xte, yte, xc = train_demo_cnn(3000 if args.quick else 8000,
                                             1000 if args.quick else 4000, 2)
        r = static_int8_cnn(model, xte, yte, xc)
        print(f"static int8 demo CNN: size {r['int8_bytes'] / r['fp32_bytes']:.3f}x of float32 "
              f"({r['fp32_bytes']} -> {r['int8_bytes']} bytes); test accuracy "
              f"{100 * r['fp32_acc']:.2f}% -> {100 * r['int8_acc']:.2f}%")
    if "lstm" in only:
        model, data, vocab = train_char_lstm(60 if args.quick else 300)
        r = dynamic_int8_lstm(model, data, vocab)
        print(f"dynamic int8 char-LSTM LM: perplexity {r['fp32_ppl']:.3f} -> {r['int8_ppl']:.3f} "
              f"({100 * (r['int8_ppl'] / r['fp32_ppl'] - 1):+.2f}%); size "
              f"{r['int8_bytes'] / r['fp32_bytes']:.3f}x")
    if "gpt" in only:
        model, data, vocab = train_tiny_gpt(60 if args.quick else 250)
        r = eval_gpt_weight_only(model, data, vocab)
        for k, v in r.items():
            print(f"weight-only {k}: Linear weight memory {v['weight_ratio']:.3f}x, perplexity "
                  f"{v['ppl']:.3f} ({100 * (v['ppl'] / r['fp32']['ppl'] - 1):+.2f}%), next-token "
                  f"top-1 agrees with float32 {100 * v['top1_agree']:.1f}%, greedy generation "
                  f"identical for the first {v['gen_same_prefix']} of 100 tokens")
    if "mlp" in only:
        for row in dynamic_int8_timings(args.quick):
            print(f"{row['workload']}: float32 {row['fp32_ms']:.3f} ms, dynamic int8 "
                  f"{row['int8_ms']:.3f} ms ({row['ratio']:.2f}x)")


if __name__ == "__main__":
    main()
