"""SummaryWriter: event files read back with TensorBoard's own EventAccumulator."""

import io
import os

import numpy as np
import pytest

import ember

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa
from ember.utils.tensorboard import SummaryWriter  # noqa: E402


def load(path):
    ea = EventAccumulator(str(path), size_guidance={"scalars": 0, "histograms": 0, "images": 0,
                                                    "tensors": 0})
    ea.Reload()
    return ea


def test_scalars_every_value(tmp_path):
    values = [0.5, 1.25, -3.0, 1e-8, 123456.0]
    with SummaryWriter(tmp_path) as w:
        for i, v in enumerate(values):
            w.add_scalar("loss/train", v, i)
        w.add_scalar("tensor", ember.tensor(2.5), 0)
        w.add_scalar("np", np.float64(0.125), 3, walltime=1234.5)
        w.add_scalar("bf16", ember.tensor(1.5, dtype=ember.bfloat16), 0)
        w.add_scalar("new", 4.0, 1, new_style=True)
    ea = load(tmp_path)
    got = ea.Scalars("loss/train")
    assert [e.step for e in got] == list(range(5))
    np.testing.assert_allclose([e.value for e in got], values, rtol=1e-7)
    assert ea.Scalars("tensor")[0].value == 2.5
    e = ea.Scalars("np")[0]
    assert (e.step, e.value, e.wall_time) == (3, 0.125, 1234.5)
    assert ea.Scalars("bf16")[0].value == 1.5
    t = ea.Tensors("new")[0]
    assert t.step == 1 and t.tensor_proto.float_val[0] == 4.0
    with pytest.raises(AssertionError, match="one element"):
        SummaryWriter(tmp_path / "x").add_scalar("bad", ember.ones(3))


def test_add_scalars_writes_one_run_per_tag(tmp_path):
    with SummaryWriter(tmp_path) as w:
        for step in range(3):
            w.add_scalars("run", {"a": step, "b": 2.0 * step}, step)
    for tag, scale in (("a", 1.0), ("b", 2.0)):
        ea = load(tmp_path / f"run_{tag}")
        assert [e.value for e in ea.Scalars("run")] == [scale * s for s in range(3)]


def test_histogram_matches_numpy(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000)
    with SummaryWriter(tmp_path) as w:
        w.add_histogram("w", ember.tensor(x), 7)
        w.add_histogram("auto", x, 8, bins="auto")
        w.add_histogram("few", x, 9, bins=50, max_bins=10)
    ea = load(tmp_path)
    h = ea.Histograms("w")[0]
    assert h.step == 7
    hv = h.histogram_value
    assert hv.num == 1000 and hv.min == x.min() and hv.max == x.max()
    np.testing.assert_allclose([hv.sum, hv.sum_squares], [x.sum(), x.dot(x)], rtol=1e-12)
    assert sum(hv.bucket) == 1000
    # each count is the number of values in (previous limit, limit]
    lims = np.array(hv.bucket_limit)
    counts = np.histogram(x, bins=lims)[0]
    np.testing.assert_array_equal(np.array(hv.bucket)[1:], counts)
    a = ea.Histograms("auto")[0].histogram_value
    np.testing.assert_array_equal(np.array(a.bucket)[1:], np.histogram(x, bins="auto")[0])
    few = ea.Histograms("few")[0].histogram_value
    assert len(few.bucket) <= 11 and sum(few.bucket) == 1000


def decode(img):
    PIL = pytest.importorskip("PIL.Image")
    return np.asarray(PIL.open(io.BytesIO(img.encoded_image_string)))


def test_images(tmp_path):
    rng = np.random.default_rng(1)
    chw = rng.random((3, 5, 7)).astype(np.float32)
    hwc_u8 = rng.integers(0, 256, (4, 6, 3)).astype(np.uint8)
    batch = rng.random((3, 1, 4, 4))
    with SummaryWriter(tmp_path) as w:
        w.add_image("chw", ember.tensor(chw), 0)
        w.add_image("hwc", hwc_u8, 1, dataformats="HWC")
        w.add_image("hw", chw[0], 2, dataformats="HW")
        w.add_images("batch", batch, 3)
    ea = load(tmp_path)
    im = ea.Images("chw")[0]
    assert (im.height, im.width) == (5, 7)
    np.testing.assert_array_equal(decode(im), (chw.transpose(1, 2, 0) * 255).astype(np.uint8))
    np.testing.assert_array_equal(decode(ea.Images("hwc")[0]), hwc_u8)
    gray = decode(ea.Images("hw")[0])
    assert gray.shape == (5, 7, 3) and (gray[..., 0] == (chw[0] * 255).astype(np.uint8)).all()
    grid = decode(ea.Images("batch")[0])
    assert grid.shape == (4, 12, 3)
    np.testing.assert_array_equal(grid[:, 4:8, 0], (batch[1, 0] * 255).astype(np.uint8))
    with pytest.raises(AssertionError, match="input format"):
        SummaryWriter(tmp_path / "y").add_image("bad", chw, dataformats="HW")


def test_figure(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(2, 1), dpi=50)
    plt.plot([0, 1], [1, 0])
    with SummaryWriter(tmp_path) as w:
        w.add_figure("fig", fig, 0)
    im = load(tmp_path).Images("fig")[0]
    assert (im.width, im.height) == (100, 50)
    assert decode(im).shape == (50, 100, 4)
    assert not plt.fignum_exists(fig.number)  # closed


def test_text(tmp_path):
    with SummaryWriter(tmp_path) as w:
        w.add_text("note", "hello **world** ü", 4)
    t = load(tmp_path).Tensors("note/text_summary")[0]
    assert t.step == 4 and t.tensor_proto.string_val[0].decode() == "hello **world** ü"


def test_hparams(tmp_path):
    from tensorboard.plugins.hparams import metadata
    with SummaryWriter(tmp_path) as w:
        w.add_hparams({"lr": 0.1, "bs": 32, "opt": "sgd", "nest": True}, {"hp/acc": 0.75},
                      hparam_domain_discrete={"opt": ["sgd", "adam"]}, run_name="r1")
    ea = load(tmp_path / "r1")
    content = ea.PluginTagToContent(metadata.PLUGIN_NAME)
    exp = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert [h.name for h in exp.hparam_infos] == ["lr", "bs", "opt", "nest"]
    assert [v.string_value for v in exp.hparam_infos[2].domain_discrete.values] == ["sgd", "adam"]
    assert exp.metric_infos[0].name.tag == "hp/acc"
    start = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["lr"].number_value == 0.1 and start.hparams["bs"].number_value == 32
    assert start.hparams["opt"].string_value == "sgd" and start.hparams["nest"].bool_value
    assert ea.Scalars("hp/acc")[0].value == 0.75
    with pytest.raises(TypeError):
        SummaryWriter(tmp_path / "z").add_hparams([1], {})


def test_pr_curve(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 100)
    preds = rng.random(100)
    with SummaryWriter(tmp_path) as w:
        w.add_pr_curve("pr", ember.tensor(labels), ember.tensor(preds), 1, num_thresholds=11)
    from tensorboard.util import tensor_util
    t = load(tmp_path).Tensors("pr")[0]
    data = tensor_util.make_ndarray(t.tensor_proto)
    assert data.shape == (6, 11)
    # brute force: positive at threshold i/10 when prediction >= i/10 (bucketed as TB does)
    for i in range(11):
        pos = np.floor(preds * 10) >= i
        tp = np.sum(pos & (labels == 1))
        fp = np.sum(pos & (labels == 0))
        fn = np.sum(~pos & (labels == 1))
        tn = np.sum(~pos & (labels == 0))
        np.testing.assert_allclose(data[:4, i], [tp, fp, tn, fn])
        np.testing.assert_allclose(data[4, i], tp / max(tp + fp, 1e-7), rtol=1e-6)
        np.testing.assert_allclose(data[5, i], tp / max(tp + fn, 1e-7), rtol=1e-6)


def test_embedding(tmp_path):
    mat = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    with SummaryWriter(tmp_path) as w:
        w.add_embedding(ember.tensor(mat), metadata=["a", "b", "c", "d"],
                        label_img=ember.rand(4, 3, 2, 2), global_step=5, tag="emb")
        w.add_embedding(mat, metadata=[[1, "x"], [2, "y"], [3, "z"], [4, "w"]],
                        metadata_header=["n", "s"], tag="two")
    d = tmp_path / "00005" / "emb"
    back = np.loadtxt(d / "tensors.tsv", delimiter="\t")
    np.testing.assert_allclose(back, mat, rtol=1e-7)
    assert (d / "metadata.tsv").read_text().split() == ["a", "b", "c", "d"]
    assert (d / "sprite.png").read_bytes().startswith(b"\x89PNG")
    meta2 = (tmp_path / "00000" / "two" / "metadata.tsv").read_text().splitlines()
    assert meta2 == ["n\ts", "1\tx", "2\ty", "3\tz", "4\tw"]
    cfg = (tmp_path / "projector_config.pbtxt").read_text()
    assert cfg.count("embeddings {") == 2
    assert 'tensor_path: "00005/emb/tensors.tsv"' in cfg and "single_image_dim: 2" in cfg


def test_purge_step_flush_and_default_logdir(tmp_path, monkeypatch):
    with SummaryWriter(tmp_path, purge_step=2) as w:
        w.add_scalar("x", 1.0, 2)
        w.flush()
        assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path))
    monkeypatch.chdir(tmp_path)
    w = SummaryWriter(comment="_exp")
    assert w.get_logdir().startswith("runs") and w.get_logdir().endswith("_exp")
    w.close()
    w = SummaryWriter(tmp_path / "suffix", filename_suffix=".v1")
    w.close()
    assert all(f.endswith(".v1") for f in os.listdir(tmp_path / "suffix"))


def test_add_graph(tmp_path):
    lin = ember.nn.Sequential(ember.nn.Linear(3, 2), ember.nn.ReLU())
    try:
        from ember.fx import symbolic_trace  # noqa: F401
    except ImportError:
        with pytest.raises(NotImplementedError, match="ember.fx"):
            SummaryWriter(tmp_path).add_graph(lin, ember.randn(1, 3))
        return
    with SummaryWriter(tmp_path) as w:
        w.add_graph(lin, ember.randn(1, 3))
    g = load(tmp_path).Graph()
    ops = [n.op for n in g.node]
    assert ops[0] == "IO Node" and ops[-1] == "IO Node"
    assert len(g.node) == 4  # input, linear, relu, output
    assert g.node[2].input == [g.node[1].name]
