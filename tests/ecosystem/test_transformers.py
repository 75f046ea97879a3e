"""Hugging Face transformers, unmodified, on ember under the torch alias: GPT-2, BERT (sequence
classification) and Llama built from small configs. The same weights, saved by the real
PyTorch with ``save_pretrained`` (safetensors), load with ``from_pretrained`` on ember and give
the same logits and the same greedy ``generate`` output; ember trains them (loss.backward) and
its own ``save_pretrained``/``from_pretrained`` round trip is exact.

mpi4py stays visible to the child when installed: ``torch.distributed.is_available()`` is then
True and transformers imports its distributed integrations (FSDP2, ``_composable.fsdp``, DTensor,
``_functional_collectives.all_to_all_single_autograd``) at import time, all served by ember."""

import pytest

from ._runner import require, run_oracle, run_under_alias

require("transformers", "torch")

CONFIGS = '''
from transformers import (BertConfig, BertForSequenceClassification, GPT2Config,
                          GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM)
MODELS = {
    "gpt2": (GPT2LMHeadModel, GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2,
                                         n_head=4, bos_token_id=0, eos_token_id=1)),
    "bert": (BertForSequenceClassification,
             BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=37,
                        max_position_embeddings=32, num_labels=3)),
    "llama": (LlamaForCausalLM,
              LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=64, bos_token_id=0, eos_token_id=1)),
}
'''


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """The real PyTorch builds each model, saves it with save_pretrained, and records logits
    on fixed token ids and (for the language models) a greedy generation."""
    d = str(tmp_path_factory.mktemp("hf_oracle"))
    run_oracle(CONFIGS + f"""
for name, (cls, cfg) in MODELS.items():
    torch.manual_seed(0)
    model = cls(cfg).eval()
    ids = torch.randint(2, 64, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
        gen = (model.generate(ids[:, :4], attention_mask=mask[:, :4], max_new_tokens=6,
                              do_sample=False, pad_token_id=1)
               if name != "bert" else torch.zeros(0))
    model.save_pretrained({d!r} + "/" + name)
    torch.save({{"ids": ids, "logits": logits, "gen": gen}}, {d!r} + "/" + name + ".pt")
""")
    return d


def test_transformers_models_match_pytorch_and_train(oracle, tmp_path):
    out = run_under_alias(CONFIGS + f"""
import os
import transformers
for name, (cls, cfg) in MODELS.items():
    ref = torch.load({oracle!r} + "/" + name + ".pt")
    ids, mask = ref["ids"], torch.ones(2, 8, dtype=torch.long)
    # PyTorch's checkpoint, loaded by transformers on ember
    model = cls.from_pretrained({oracle!r} + "/" + name).eval()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    err = (logits - ref["logits"]).abs().max().item()
    assert logits.dtype == torch.float32 and err <= 1e-4, (name, "logits", err)
    if name != "bert":
        gen = model.generate(ids[:, :4], attention_mask=mask[:, :4], max_new_tokens=6,
                             do_sample=False, pad_token_id=1)
        assert gen.tolist() == ref["gen"].tolist(), (name, gen.tolist(), ref["gen"].tolist())

    # training: the loss transformers computes, backward into every parameter
    model.train()
    labels = torch.tensor([0, 2]) if name == "bert" else ids
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert loss.item() > 0 and not missing, (name, loss.item(), missing[:5])
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()

    # ember's save_pretrained (safetensors) and back
    model.eval()
    path = {str(tmp_path)!r} + "/" + name
    model.save_pretrained(path)
    assert os.path.exists(path + "/model.safetensors"), os.listdir(path)
    again = cls.from_pretrained(path).eval()
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask).logits
        b = again(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(a, b), (name, (a - b).abs().max().item())
    print("MATCH", name, err)
print("TRANSFORMERS", transformers.__version__)
print("DISTRIBUTED", torch.distributed.is_available())
""")
    assert out.count("MATCH") == 3, out
    # with mpi4py installed, transformers took its distributed import path on ember
    import importlib.util
    if importlib.util.find_spec("mpi4py") is not None:
        assert "DISTRIBUTED True" in out, out
