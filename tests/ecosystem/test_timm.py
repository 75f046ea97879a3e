"""timm, unmodified, on ember under the torch alias: four model families built with
``create_model(pretrained=False)``. With the weights of the same model built on the real
PyTorch (in its own process), ember gives the same eval logits, and one training step
(forward, cross-entropy, backward, SGD with momentum) gives the same loss, gradients and
updated weights."""

import pytest

from ._runner import require, run_oracle, run_under_alias

require("timm", "torch")

# (model, input side): the ViT's patch grid is fixed by its name, the rest run on small images
MODELS = [("resnet18", 64), ("vit_tiny_patch16_224", 224), ("convnext_atto", 64),
          ("mobilenetv3_small_100", 64)]


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """One oracle process for the module (importing timm on PyTorch costs seconds): per model,
    its initial weights, an input, the eval logits, then one training step's loss, gradients and
    weights after the step."""
    d = str(tmp_path_factory.mktemp("timm_oracle"))
    run_oracle(f"""
        import timm
        for name, side in {MODELS!r}:
            torch.manual_seed(0)
            model = timm.create_model(name, pretrained=False, num_classes=10).eval()
            state = {{k: v.clone() for k, v in model.state_dict().items()}}
            x = torch.randn(2, 3, side, side)
            target = torch.tensor([1, 7])
            with torch.no_grad():
                logits = model(x)
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            loss = torch.nn.functional.cross_entropy(model(x), target)
            loss.backward()
            grads = {{n: p.grad.clone() for n, p in model.named_parameters()}}
            opt.step()
            torch.save({{"state": state, "x": x, "target": target, "logits": logits,
                         "loss": loss.detach(), "grads": grads,
                         "after": dict(model.named_parameters())}}, {d!r} + "/" + name + ".pt")
    """, stub_torchvision=True)
    return d


def test_timm_logits_and_train_step_match_pytorch(oracle):
    out = run_under_alias(f"""
        import timm
        for name, side in {MODELS!r}:
            ref = torch.load({oracle!r} + "/" + name + ".pt")
            model = timm.create_model(name, pretrained=False, num_classes=10).eval()
            model.load_state_dict(ref["state"])
            with torch.no_grad():
                logits = model(ref["x"])
            err = (logits - ref["logits"]).abs().max().item()
            assert logits.dtype == torch.float32 and err <= 1e-4, (name, "logits", err)

            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            loss = torch.nn.functional.cross_entropy(model(ref["x"]), ref["target"])
            loss.backward()
            assert abs(loss.item() - ref["loss"].item()) <= 1e-4, (name, "loss")
            for n, p in model.named_parameters():
                g = ref["grads"][n]
                gerr = (p.grad - g).abs().max().item()
                assert gerr <= 1e-4 * max(1.0, g.abs().max().item()), (name, n, "grad", gerr)
            opt.step()
            for n, p in model.named_parameters():
                perr = (p.detach() - ref["after"][n]).abs().max().item()
                assert perr <= 1e-4, (name, n, "after step", perr)
            print("MATCH", name, err)
        print("TIMM", timm.__version__)
    """)
    assert out.count("MATCH") == len(MODELS), out
