"""Export the demo CNN (``ember/demo.py``) as a C library, with an input batch and ember's
outputs for it, for ``main.c`` / ``main.cpp`` to check against.

    python examples/deploy_c/export_model.py build [--checkpoint ember_demo_out/model.pt]
                                                   [--batch 4]

Writes into ``build/``: ``libember_model.so``, ``ember_model.h``, ``ember_model.c``,
``ember_model.weights`` (from ``ember.export.aot_compile``), ``input.bin`` (the batch of
digits as raw float32) and ``reference.txt`` (ember's logits, one number per line).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402

import ember  # noqa: E402
from ember import demo, nn  # noqa: E402
from ember.export import Dim, aot_compile, export  # noqa: E402
from ember.vision.datasets import Digits  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--checkpoint", help="a state dict saved by the demo (default: seeded init)")
    p.add_argument("--batch", type=int, default=4)
    args = p.parse_args(argv)

    ember.manual_seed(0)
    model = demo.build_model(nn).eval()
    if args.checkpoint:
        state = ember.load(args.checkpoint)
        model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    x, _ = Digits(train=False, size=max(args.batch, 2), seed=0).tensors()
    x = x[:args.batch].float().contiguous()

    # the batch dimension stays dynamic: the library runs any batch size from 1 to 1024
    ep = export(model, (x,), dynamic_shapes={"input": {0: Dim("batch", min=1, max=1024)}})
    lib = aot_compile(ep, args.out_dir)
    with ember.no_grad():
        ref = model(x).numpy()
    x.numpy().astype(np.float32).tofile(os.path.join(args.out_dir, "input.bin"))
    with open(os.path.join(args.out_dir, "reference.txt"), "w") as f:
        f.write("".join(f"{v:.9g}\n" for v in ref.reshape(-1)))
    print(f"wrote {lib}, input.bin ({tuple(x.shape)}) and reference.txt ({tuple(ref.shape)})")


if __name__ == "__main__":
    main()
