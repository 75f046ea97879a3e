"""A character-level LSTM language model on Shakespeare's sonnets (bundled, public domain);
trains, then samples text.

    python examples/char_lstm.py [--steps 600] [--quick]
"""

import argparse
import os

import ember as torch
from ember import nn

TEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sonnets.txt")


class CharLSTM(nn.Module):
    def __init__(self, vocab, hidden=128, layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, 64)
        self.lstm = nn.LSTM(64, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embed(x), state)
        return self.head(out), state


def sample(model, stoi, itos, prompt="Shall I", n=200, temperature=0.8):
    model.eval()
    with torch.no_grad():
        x = torch.tensor([[stoi[c] for c in prompt]])
        logits, state = model(x)
        out = list(prompt)
        for _ in range(n):
            probs = torch.softmax(logits[0, -1] / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1).item()
            out.append(itos[nxt])
            logits, state = model(torch.tensor([[nxt]]), state)
    model.train()
    return "".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    text = open(TEXT, encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    itos = {i: c for c, i in stoi.items()}
    data = torch.tensor([stoi[c] for c in text])
    model = CharLSTM(len(chars), hidden=64 if args.quick else 128)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = 40 if args.quick else args.steps
    first = None
    for step in range(steps):
        starts = torch.randint(0, len(data) - args.seq - 1, (args.batch,))
        x = torch.stack([data[s:s + args.seq] for s in starts.tolist()])
        y = torch.stack([data[s + 1:s + args.seq + 1] for s in starts.tolist()])
        logits, _ = model(x)
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % max(steps // 6, 1) == 0:
            print(f"step {step:4d}  loss {loss.item():.3f}")
    print("--- sample ---")
    print(sample(model, stoi, itos, n=80 if args.quick else 300))
    print(f"RESULT first_loss={first:.6f} last_loss={loss.item():.6f}")


if __name__ == "__main__":
    main()
