"""torchmetrics, unmodified, on ember under the torch alias: classification and regression
metrics updated over batches (and their per-batch forward values) equal the same metrics
computed by torchmetrics on the real PyTorch from the same data."""

from ._runner import require, run_oracle, run_under_alias

require("torchmetrics", "torch")

BODY = '''
import json
import numpy as np
from torchmetrics import MeanSquaredError
from torchmetrics.classification import Accuracy, F1Score
rng = np.random.default_rng(0)
metrics = {
    "acc": Accuracy(task="multiclass", num_classes=5),
    "acc_top2": Accuracy(task="multiclass", num_classes=5, top_k=2),
    "f1_macro": F1Score(task="multiclass", num_classes=5, average="macro"),
    "f1_micro": F1Score(task="multiclass", num_classes=5, average="micro"),
    "f1_binary": F1Score(task="binary"),
    "acc_binary": Accuracy(task="binary", threshold=0.4),
    "mse": MeanSquaredError(),
    "rmse": MeanSquaredError(squared=False),
}
steps = {k: [] for k in metrics}
for _ in range(4):
    logits = torch.from_numpy(rng.standard_normal((16, 5)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 5, 16))
    probs = torch.from_numpy(rng.random(16).astype(np.float32))
    bits = torch.from_numpy(rng.integers(0, 2, 16))
    pred = torch.from_numpy(rng.standard_normal(16).astype(np.float32))
    target = torch.from_numpy(rng.standard_normal(16).astype(np.float32))
    for k, m in metrics.items():
        args = ((logits, labels) if k in ("acc", "acc_top2", "f1_macro", "f1_micro")
                else (probs, bits) if k.endswith("binary") else (pred, target))
        steps[k].append(float(m(*args)))  # forward: this batch's value, and accumulates
values = {k: float(m.compute()) for k, m in metrics.items()}
for m in metrics.values():
    m.reset()
print("RESULT" + json.dumps({"steps": steps, "final": values}))
'''


def _result(out):
    import json
    return json.loads(out.split("RESULT", 1)[1].splitlines()[0])


def test_torchmetrics_over_batches_match_pytorch():
    ours = _result(run_under_alias(BODY))
    ref = _result(run_oracle(BODY))
    assert ours["final"].keys() == ref["final"].keys()
    for k in ref["final"]:
        assert abs(ours["final"][k] - ref["final"][k]) <= 1e-6, (k, ours["final"][k],
                                                                  ref["final"][k])
        for a, b in zip(ours["steps"][k], ref["steps"][k]):
            assert abs(a - b) <= 1e-6, (k, ours["steps"][k], ref["steps"][k])
