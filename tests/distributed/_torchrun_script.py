"""A training script written for torchrun + gloo. The only framework-specific line is the
import: FRAMEWORK=torch runs it with PyTorch, otherwise with ember."""
import importlib
import os
import sys

torch = importlib.import_module(os.environ.get("FRAMEWORK", "ember"))
dist = importlib.import_module(torch.__name__ + ".distributed")
nn = importlib.import_module(torch.__name__ + ".nn")
from_data = importlib.import_module(torch.__name__ + ".utils.data")
DDP = importlib.import_module(torch.__name__ + ".nn.parallel").DistributedDataParallel


def main():
    dist.init_process_group("gloo")
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    assert dist.get_rank() == rank and dist.get_world_size() == world
    torch.manual_seed(0)
    X = torch.randn(64, 4, dtype=torch.float64)
    y = X @ torch.tensor([[1.0], [-1.0], [2.0], [0.5]], dtype=torch.float64)
    ds = from_data.TensorDataset(X, y)
    sampler = from_data.DistributedSampler(ds, shuffle=True, seed=3)
    loader = from_data.DataLoader(ds, batch_size=8, sampler=sampler)
    model = DDP(nn.Linear(4, 1).double())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = sys.argv[1]
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            opt.step()
        if rank == 0:
            torch.save({"epoch": epoch, "model": model.module.state_dict(),
                        "optimizer": opt.state_dict()}, ckpt)
        dist.barrier()
    w = model.module.weight.detach().clone()
    gathered = [torch.zeros_like(w) for _ in range(world)]
    dist.all_gather(gathered, w)
    assert all(torch.equal(gathered[0], g) for g in gathered), "replicas diverged"
    if rank == 0:
        print(f"FINAL_LOSS {loss.item():.6f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
