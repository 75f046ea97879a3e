"""Fit a cubic polynomial to noisy samples with gradient descent (ember's autograd by hand).

    python examples/regression.py [--steps 500] [--quick]
"""

import argparse

import ember as torch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    steps = 200 if args.quick else args.steps

    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 200).unsqueeze(1)
    true_w = torch.tensor([[0.5], [-1.0], [2.0], [1.5]])  # 0.5 - x + 2x^2 + 1.5x^3
    features = torch.cat([x ** k for k in range(4)], dim=1)
    y = features @ true_w + 0.05 * torch.randn(200, 1)

    w = torch.zeros(4, 1, requires_grad=True)
    first = None
    for step in range(steps):
        loss = ((features @ w - y) ** 2).mean()
        if first is None:
            first = loss.item()
        loss.backward()
        with torch.no_grad():
            w -= args.lr * w.grad
            w.grad.zero_()
        if step % max(steps // 5, 1) == 0:
            print(f"step {step:4d}  loss {loss.item():.5f}")
    print("learned coefficients:", [round(v, 3) for v in w.detach().reshape(-1).tolist()])
    print(f"RESULT first_loss={first:.6f} last_loss={loss.item():.6f}")


if __name__ == "__main__":
    main()
