"""A variational autoencoder on ember's built-in digits; saves a grid of generated samples.

    python examples/vae.py [--epochs 5] [--out vae_samples.png] [--quick]
"""

import argparse

import ember as torch
from ember import nn
from ember.vision.datasets import Digits
from ember.vision.utils import save_image


class VAE(nn.Module):
    def __init__(self, latent=16):
        super().__init__()
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU())
        self.mu = nn.Linear(400, latent)
        self.logvar = nn.Linear(400, latent)
        self.dec = nn.Sequential(nn.Linear(latent, 400), nn.ReLU(), nn.Linear(400, 784))

    def forward(self, x):
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterisation
        return self.dec(z), mu, logvar


def loss_fn(logits, x, mu, logvar):
    bce = nn.functional.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (bce + kld) / x.shape[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--out", default="vae_samples.png")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    x_all, _ = Digits(train=True, size=2048 if args.quick else 20000).tensors()
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for epoch in range(1 if args.quick else args.epochs):
        perm = torch.randperm(len(x_all))
        total = 0.0
        for i in range(0, len(x_all), 128):
            x = x_all[perm[i:i + 128]]
            logits, mu, logvar = model(x)
            loss = loss_fn(logits, x, mu, logvar)
            first = loss.item() if first is None else first
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
        print(f"epoch {epoch}: loss per image {total / len(x_all):.2f}")
    with torch.no_grad():
        samples = torch.sigmoid(model.dec(torch.randn(64, 16))).reshape(64, 1, 28, 28)
    save_image(samples, args.out, nrow=8)
    print(f"samples saved to {args.out}")
    print(f"RESULT first_loss={first:.6f} last_loss={loss.item():.6f}")


if __name__ == "__main__":
    main()
