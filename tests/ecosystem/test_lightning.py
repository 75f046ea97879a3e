"""Lightning, unmodified, on ember under the torch alias: a LightningModule trained with
``Trainer(accelerator="cpu", max_epochs=1).fit``, evaluated with ``.test``, and the checkpoint
the ModelCheckpoint callback wrote loads back (``load_from_checkpoint`` and ``torch.load``)
with the trained weights."""

from ._runner import require, run_under_alias

require("lightning", "torch")


def test_lightning_fit_test_and_checkpoint(tmp_path):
    out = run_under_alias(f"""
        import glob
        import lightning as L
        from torch.utils.data import DataLoader, TensorDataset

        class Model(L.LightningModule):
            def __init__(self, hidden=8):
                super().__init__()
                self.save_hyperparameters()
                self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(),
                                               torch.nn.Linear(hidden, 2))

            def training_step(self, batch, i):
                x, y = batch
                loss = torch.nn.functional.cross_entropy(self.net(x), y)
                self.log("train_loss", loss)
                return loss

            def test_step(self, batch, i):
                x, y = batch
                acc = (self.net(x).argmax(1) == y).float().mean()
                self.log("test_acc", acc)

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.5)

        torch.manual_seed(0)
        x = torch.randn(256, 4)
        y = (x[:, 0] + x[:, 1] > 0).long()  # a separable task: one epoch learns it
        data = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
        model = Model()
        before = {{k: v.clone() for k, v in model.state_dict().items()}}
        trainer = L.Trainer(accelerator="cpu", max_epochs=1, default_root_dir={str(tmp_path)!r},
                            enable_progress_bar=False, logger=False, enable_model_summary=False)
        trainer.fit(model, data)
        assert trainer.state.finished and trainer.global_step == 8, trainer.global_step
        assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
        result = trainer.test(model, DataLoader(TensorDataset(x, y), batch_size=64),
                              verbose=False)
        assert result[0]["test_acc"] > 0.8, result

        ckpts = glob.glob({str(tmp_path)!r} + "/checkpoints/*.ckpt")
        assert len(ckpts) == 1, ckpts
        ckpt = torch.load(ckpts[0], weights_only=False)
        assert ckpt["epoch"] == 0 and ckpt["global_step"] == 8, (ckpt["epoch"],
                                                                 ckpt["global_step"])
        for k, v in model.state_dict().items():
            assert torch.equal(ckpt["state_dict"][k], v), k
        back = Model.load_from_checkpoint(ckpts[0])
        assert back.hparams.hidden == 8
        for k, v in model.state_dict().items():
            assert torch.equal(back.state_dict()[k], v), k
        print("LIGHTNING", L.__version__, result[0]["test_acc"])
    """)
    assert "LIGHTNING" in out
