"""Run under mpiexec (2 or 3 ranks) by test_sharding.py. Each part trains the MLP and the GPT
for 20 steps with a sharded scheme and checks the result against single-process training of
the same model on the whole batch, which every rank also runs (float64, 1e-10). The parts to
run are named on the command line: zero, pipe, fsdp, ckpt. Prints ``SHARD_OK <part> <n>``."""

import copy
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _models as M  # noqa: E402

import ember as torch  # noqa: E402
import ember.distributed as dist  # noqa: E402
import ember.nn as nn  # noqa: E402

dist.init_process_group("gloo")
R, N = dist.get_rank(), dist.get_world_size()
STEPS, BATCH = 20, 12
torch.set_default_dtype(torch.float64)
checks = {}


def batch(kind, step):
    rng = np.random.default_rng(100 + step)
    xs, ys = M.shape_of(kind, BATCH)
    return torch.tensor(rng.normal(size=xs)), torch.tensor(rng.normal(size=ys))


def shard(t):
    per = t.shape[0] // N
    return t[R * per:(R + 1) * per]


def check_close(part, a, b, what, tol=1e-10):
    a = a.full_tensor() if hasattr(a, "full_tensor") else a
    a, b = a.detach().numpy(), b.detach().numpy()
    assert a.shape == b.shape, f"rank {R}: {what}: shape {a.shape} != {b.shape}"
    err = np.max(np.abs(a - b)) if a.size else 0.0
    assert err <= tol, f"rank {R}: {what}: max abs difference {err} > {tol}"
    checks[part] = checks.get(part, 0) + 1


def opt_for(params, which):
    if which == "adam":
        return torch.optim.Adam(params, lr=1e-2)
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


_REFS = {}


def reference(kind, which, steps=STEPS):
    """Single-process training on the whole batch (cached; the caller gets a copy)."""
    if (kind, which, steps) in _REFS:
        return copy.deepcopy(_REFS[kind, which, steps])
    ref = M.make(kind)
    opt = opt_for(ref.parameters(), which)
    for step in range(steps):
        x, y = batch(kind, step)
        opt.zero_grad()
        nn.functional.mse_loss(ref(x), y).backward()
        opt.step()
    _REFS[kind, which, steps] = (ref, opt)
    return copy.deepcopy((ref, opt))


# ------------------------------------------------------------------ ZeRO-1
def part_zero():
    from ember.distributed.optim import ZeroRedundancyOptimizer
    from ember.nn.parallel import DistributedDataParallel as DDP
    for kind, which, bucket_view in (("mlp", "adam", False), ("mlp", "sgd", True),
                                     ("gpt", "adam", False)):
        ref, ref_opt = reference(kind, which)
        model = DDP(M.make(kind))
        cls = torch.optim.Adam if which == "adam" else torch.optim.SGD
        kw = dict(lr=1e-2) if which == "adam" else dict(lr=0.05, momentum=0.9)
        opt = ZeroRedundancyOptimizer(model.parameters(), cls,
                                      parameters_as_bucket_view=bucket_view, **kw)
        # the state of each parameter lives on one rank only
        mine = sum(p.numel() for g in opt.optim.param_groups for p in g["params"])
        total = sum(p.numel() for p in model.parameters())
        assert mine < total, (mine, total)
        for step in range(STEPS):
            x, y = batch(kind, step)
            opt.zero_grad()
            nn.functional.mse_loss(model(shard(x)), shard(y)).backward()
            opt.step()
        for (name, p), q in zip(model.module.named_parameters(), ref.parameters()):
            check_close("zero", p, q, f"zero {kind} {which} {name}")
        # consolidated state dict == the reference optimizer's
        try:
            opt.state_dict()
            raise AssertionError("state_dict before consolidate_state_dict did not raise")
        except RuntimeError as e:
            assert "consolidate" in str(e), e
        opt.consolidate_state_dict(to=0)
        if R == 0:
            sd, rsd = opt.state_dict(), ref_opt.state_dict()
            assert sorted(sd["state"]) == sorted(rsd["state"]), (sd["state"].keys(),)
            for k, st in rsd["state"].items():
                for name, v in st.items():
                    check_close("zero", sd["state"][k][name], v, f"zero state {k} {name}")
            assert [g["params"] for g in sd["param_groups"]] == \
                [g["params"] for g in rsd["param_groups"]]
        # load the reference's state on every rank, then one more step agrees
        opt2 = ZeroRedundancyOptimizer(model.parameters(), cls, **kw)
        opt2.load_state_dict(copy.deepcopy(ref_opt.state_dict()))
        x, y = batch(kind, STEPS)
        for m, o in ((model, opt2), (ref, ref_opt)):
            o.zero_grad()
            nn.functional.mse_loss(m(shard(x) if o is opt2 else x),
                                   shard(y) if o is opt2 else y).backward()
            o.step()
        for (name, p), q in zip(model.module.named_parameters(), ref.parameters()):
            check_close("zero", p, q, f"zero after load {kind} {which} {name}")


# ------------------------------------------------------------------ pipelining
def part_pipe():
    from ember.distributed.pipelining import (PipelineStage, Schedule1F1B, ScheduleGPipe,
                                              SplitPoint, pipeline)
    loss_fn = nn.functional.mse_loss
    for kind, sched_cls, manual in (("mlp", ScheduleGPipe, False), ("mlp", Schedule1F1B, False),
                                    ("mlp", Schedule1F1B, True), ("gpt", ScheduleGPipe, False),
                                    ("gpt", Schedule1F1B, True)):
        ref, _ = reference(kind, "adam")
        model = M.make(kind)
        if manual:  # hand-made stages: slices of the model
            if kind == "mlp":
                pieces = [nn.Sequential(model.layers[0], nn.Tanh()),
                          nn.Sequential(model.layers[1], nn.Tanh(), model.head)]
                if N == 3:
                    pieces = [pieces[0], pieces[1][:2], pieces[1][2:]]
            else:
                blocks = list(model.layers)
                pieces = [nn.Sequential(model.inp, *blocks[:1])]
                pieces += [nn.Sequential(*blocks[1:2])] if N == 3 else []
                pieces += [nn.Sequential(*blocks[N - 1:], model.ln_f, model.head)]
            stage_mod = pieces[R]
            stage = PipelineStage(stage_mod, R, N, "cpu")
        else:
            x0, _ = batch(kind, 0)
            names = ["layers.1", "layers.2"] if kind == "gpt" else ["layers.1", "head"]
            spec = {n: SplitPoint.BEGINNING for n in names[:N - 1]}
            pipe = pipeline(model, (x0[:3],), split_spec=spec)
            assert pipe.num_stages == N
            stage = pipe.build_stage(R, "cpu")
            stage_mod = stage.submod
        sched = sched_cls(stage, 4, loss_fn=loss_fn)
        opt = opt_for(stage_mod.parameters(), "adam")
        for step in range(STEPS):
            x, y = batch(kind, step)
            opt.zero_grad()
            losses = []
            if R == 0:
                out = sched.step(x)
            elif R == N - 1:
                out = sched.step(target=y, losses=losses)
            else:
                out = sched.step()
            opt.step()
            if R == N - 1:
                assert len(losses) == 4 and tuple(out.shape) == tuple(y.shape)
            else:
                assert out is None
        ref_params = dict(ref.named_parameters())
        model_names = {id(p): n for n, p in model.named_parameters()}
        params = list(stage_mod.parameters())
        assert params, "a stage without parameters"
        for p in params:
            name = model_names[id(p)]
            check_close("pipe", p, ref_params[name],
                        f"{sched_cls.__name__} manual={manual} {kind} {name}")


def part_pipe_multi():
    """Several stages per rank (stage s on rank s % N): Interleaved 1F1B and Looped BFS on the
    GPT cut into 2N stages (by hand and by pipeline()), each equal to single-process training;
    at 3 ranks one stage per rank (the interleaved order is then 1F1B's)."""
    from ember.distributed.pipelining import (PipelineStage, ScheduleInterleaved1F1B,
                                              ScheduleLoopedBFS, SplitPoint, pipeline)
    loss_fn = nn.functional.mse_loss
    n_stages = 4 if N == 2 else N
    runs = [(ScheduleInterleaved1F1B, 4, True), (ScheduleInterleaved1F1B, 6, False),
            (ScheduleInterleaved1F1B, 3, True), (ScheduleLoopedBFS, 4, False)]
    for sched_cls, n_mb, manual in runs:
        ref, _ = reference("gpt", "adam", steps=8)
        model = M.make("gpt")
        blocks = list(model.layers)
        if manual:
            if n_stages == 4:
                pieces = [nn.Sequential(model.inp, blocks[0]), blocks[1], blocks[2],
                          nn.Sequential(model.ln_f, model.head)]
            else:
                pieces = [nn.Sequential(model.inp, blocks[0]), blocks[1],
                          nn.Sequential(blocks[2], model.ln_f, model.head)]
            stages = [PipelineStage(pieces[s], s, n_stages, "cpu")
                      for s in range(R, n_stages, N)]
        else:
            x0, _ = batch("gpt", 0)
            names = ["layers.1", "layers.2", "ln_f"] if n_stages == 4 else ["layers.1",
                                                                              "layers.2"]
            pipe = pipeline(model, (x0[:3],), split_spec={k: SplitPoint.BEGINNING
                                                          for k in names})
            assert pipe.num_stages == n_stages
            stages = [pipe.build_stage(s, "cpu") for s in range(R, n_stages, N)]
        sched = sched_cls(stages, n_mb, loss_fn=loss_fn)
        params = [p for st in stages for p in st.submod.parameters()]
        opt = opt_for(params, "adam")
        for step in range(8):
            x, y = batch("gpt", step)
            opt.zero_grad()
            losses = []
            out = sched.step(x, target=y, losses=losses)
            opt.step()
            if R == (n_stages - 1) % N:
                assert len(losses) == n_mb and tuple(out.shape) == tuple(y.shape)
            else:
                assert out is None and not losses
        ref_params = dict(ref.named_parameters())
        model_names = {id(p): n for n, p in model.named_parameters()}
        assert params
        for p in params:
            name = model_names[id(p)]
            check_close("pipe_multi", p, ref_params[name],
                        f"{sched_cls.__name__} n_mb={n_mb} manual={manual} {name}")


# ------------------------------------------------------------------ FSDP2
def fsdp_model(kind, seed=0, **kw):
    from ember.distributed.fsdp import fully_shard
    model = M.make(kind, seed)
    for layer in model.layers:
        fully_shard(layer, **kw)
    fully_shard(model, **kw)
    return model


def fsdp_train_kind(model, opt, kind, steps):
    for step in steps:
        x, y = batch(kind, step)
        opt.zero_grad()
        nn.functional.mse_loss(model(shard(x)), shard(y)).backward()
        opt.step()


def part_hsdp():
    """HSDP: fully_shard over a 2-d (replicate, shard) mesh; every layout of the ranks equals
    single-process training: (N, 1) is pure replication, (1, N) pure sharding, (2, 2) both."""
    from ember.distributed.device_mesh import init_device_mesh
    from ember.distributed.tensor import Replicate, Shard
    shapes = [(N, 1), (1, N)] + ([(2, N // 2)] if N % 2 == 0 and N > 2 else [])
    for shape in shapes:
        mesh = init_device_mesh("cpu", shape, mesh_dim_names=("replicate", "shard"))
        for kind, which in (("mlp", "adam"), ("gpt", "sgd")):
            ref, _ = reference(kind, which, steps=8)
            model = fsdp_model(kind, mesh=mesh)
            for p in model.parameters():
                assert p.placements == (Replicate(), Shard(0)), p.placements
            opt = opt_for(model.parameters(), which)
            fsdp_train_kind(model, opt, kind, range(8))
            n_shard = shape[1]
            r_shard = mesh.get_local_rank("shard")
            # the last step's gradients: their total norm counts each shard once
            norm = nn.utils.clip_grad_norm_(model.parameters(), 1e9)
            want = nn.utils.clip_grad_norm_(ref.parameters(), 1e9)
            check_close("hsdp", norm, want, f"hsdp {shape} {kind} gradient norm")
            for (name, p), q in zip(model.named_parameters(), ref.parameters()):
                check_close("hsdp", p, q, f"hsdp {shape} {kind} {which} {name}")
                c = -(-q.shape[0] // n_shard)
                assert tuple(p.to_local().shape) == \
                    tuple(q[r_shard * c:(r_shard + 1) * c].shape)
            if CKPT and kind == "mlp":
                # a sharded checkpoint of the HSDP model (one copy of each shard written)
                # loads into a plain FSDP model over all ranks
                import ember.distributed.checkpoint as dcp
                from ember.distributed.checkpoint.state_dict import get_model_state_dict
                where = os.path.join(CKPT, f"hsdp_{shape[0]}x{shape[1]}")
                dcp.save({"model": get_model_state_dict(model)}, checkpoint_id=where)
                other = fsdp_model(kind, seed=7)
                sd = {"model": get_model_state_dict(other)}
                dcp.load(sd, checkpoint_id=where)
                other.load_state_dict(sd["model"])
                for (name, p), q in zip(other.named_parameters(), ref.parameters()):
                    check_close("hsdp", p, q, f"hsdp checkpoint {shape} -> FSDP {name}")


def part_fsdp():
    from ember.distributed.fsdp import FSDPModule
    from ember.distributed.tensor import DTensor, Shard
    for kind, which in (("mlp", "adam"), ("gpt", "adam"), ("mlp", "sgd")):
        ref, _ = reference(kind, which)
        model = fsdp_model(kind)
        assert isinstance(model, FSDPModule)
        assert type(model).__name__ == ("FSDPMLP" if kind == "mlp" else "FSDPGPT")
        for p in model.parameters():
            assert isinstance(p, DTensor) and p.placements == (Shard(0),), type(p)
        opt = opt_for(model.parameters(), which)
        fsdp_train_kind(model, opt, kind, range(STEPS))
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            check_close("fsdp", p, q, f"fsdp {kind} {which} {name}")
            # each rank keeps its torch.chunk rows of the parameter, and of its gradient
            c = -(-q.shape[0] // N)
            assert tuple(p.to_local().shape) == tuple(q[R * c:(R + 1) * c].shape)
            assert tuple(p.grad.to_local().shape) == tuple(p.to_local().shape)
    # parameter (and so gradient and optimizer-state) memory per rank is about 1/N
    local = sum(p.to_local().numel() for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert local <= total / N + 64, (local, total)
    # blocks drop their whole parameters after forward and everything after backward
    x, y = batch("mlp", 0)
    out = model(shard(x))
    states = [m._fsdp_state for m in model.modules() if isinstance(m, FSDPModule)]
    assert states[0].is_root and states[0].full is not None
    assert all(s.full is None for s in states[1:]), [s.full is None for s in states]
    nn.functional.mse_loss(out, shard(y)).backward()
    assert all(s.full is None for s in states)
    # unshard() makes the whole tensors the module's attributes until reshard()
    layer = model.layers[0]
    layer.unshard()
    assert not isinstance(layer.weight, DTensor) and tuple(layer.weight.shape) == (16, 6)
    check_close("fsdp", layer.weight, ref.layers[0].weight, "unshard", tol=1e9)
    layer.reshard()
    assert isinstance(layer.weight, DTensor)
    # reshard_after_forward=False keeps every unit's whole parameters until backward
    model = fsdp_model("mlp", reshard_after_forward=False)
    opt = opt_for(model.parameters(), "sgd")
    fsdp_train_kind(model, opt, "mlp", range(3))
    ref, _ = reference("mlp", "sgd", 3)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        check_close("fsdp", p, q, f"fsdp reshard_after_forward=False {name}")
    x, y = batch("mlp", 0)
    out = model(shard(x))
    states = [m._fsdp_state for m in model.modules() if isinstance(m, FSDPModule)]
    assert all(s.full is not None for s in states)
    model.set_reshard_after_backward(False)
    out.sum().backward()
    assert all(s.full is not None for s in states)
    model.reshard()
    assert states[0].full is None
    # gradient accumulation without sync: two half batches, one reduce-scatter
    ref = M.make("mlp")
    ref_opt = opt_for(ref.parameters(), "sgd")
    model = fsdp_model("mlp")
    opt = opt_for(model.parameters(), "sgd")
    for step in range(5):
        x, y = batch("mlp", step)
        opt.zero_grad()
        ref_opt.zero_grad()
        for k, sl in enumerate((slice(0, BATCH // 2), slice(BATCH // 2, BATCH))):
            nn.functional.mse_loss(ref(x[sl]), y[sl]).backward()
            model.set_requires_gradient_sync(k == 1)
            nn.functional.mse_loss(model(shard(x[sl])), shard(y[sl])).backward()
        opt.step()
        ref_opt.step()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        check_close("fsdp", p, q, f"fsdp no-sync accumulation {name}")
    # mixed precision: float32 compute and reduction on float64 parameters
    from ember.distributed.fsdp import MixedPrecisionPolicy
    mp = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)
    model = fsdp_model("mlp", mp_policy=mp)
    ref = M.make("mlp")
    opt, ref_opt = opt_for(model.parameters(), "sgd"), opt_for(ref.parameters(), "sgd")
    for step in range(5):
        x, y = batch("mlp", step)
        for m, o, xx, yy in ((model, opt, shard(x), shard(y)), (ref, ref_opt, x, y)):
            o.zero_grad()
            out = m(xx)
            assert out.dtype == (torch.float32 if m is model else torch.float64)
            nn.functional.mse_loss(out.double(), yy).backward()
            o.step()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        assert p.dtype == torch.float64
        check_close("fsdp", p, q, f"fsdp mixed precision {name}", tol=1e-5)


# ------------------------------------------------------------------ checkpoints
CKPT = os.environ.get("CKPT_DIR", "")
HALF = STEPS // 2


def fsdp_train(model, opt, steps):
    fsdp_train_kind(model, opt, "mlp", steps)


def part_ckpt_save():
    """At 2 ranks: train FSDP2 for half the steps, save a sharded checkpoint and a full
    state dict (for PyTorch), and check the full state dict loads into a plain model."""
    import ember.distributed.checkpoint as dcp
    from ember.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_state_dict)
    model = fsdp_model("mlp")
    opt = opt_for(model.parameters(), "adam")
    fsdp_train(model, opt, range(HALF))
    msd, osd = get_state_dict(model, opt)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=os.path.join(CKPT, "ckpt"))
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=True))
    ref, _ = reference("mlp", "adam", HALF)
    if R == 0:
        plain = M.make("mlp", seed=5)
        plain.load_state_dict(full)
        for (name, p), q in zip(plain.named_parameters(), ref.parameters()):
            check_close("ckpt_save", p, q, f"full state dict into a plain model: {name}")
        torch.save(full, os.path.join(CKPT, "full.pt"))
        torch.save(ref.state_dict(), os.path.join(CKPT, "ref.pt"))
    else:
        assert full == {}, "cpu_offload: only rank 0 keeps the full state dict"
        checks["ckpt_save"] = 1


def part_ckpt_kill():
    """At 2 ranks: rank 1 dies in the middle of writing its file; the job ends and the
    previous checkpoint must stay loadable (checked by ckpt_load)."""
    import ember.distributed.checkpoint as dcp
    from ember.distributed.checkpoint import _fs
    from ember.distributed.checkpoint.state_dict import get_state_dict
    model = fsdp_model("mlp", seed=3)
    opt = opt_for(model.parameters(), "sgd")
    fsdp_train(model, opt, range(2))

    def dying_write(f, data, key):
        f.write(data[:len(data) // 2])
        f.flush()
        if R == 1:
            os._exit(7)
        f.write(data[len(data) // 2:])

    _fs._write_piece = dying_write
    msd, osd = get_state_dict(model, opt)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=os.path.join(CKPT, "ckpt"))
    raise AssertionError("the save finished although rank 1 died")


def part_ckpt_load():
    """At 1 or 3 ranks: load the 2-rank checkpoint into a differently initialised FSDP2 model
    and its optimizer (re-sharding), then train the remaining steps: the result equals
    single-process training of all the steps (so the optimizer state was restored too)."""
    import ember.distributed.checkpoint as dcp
    from ember.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    model = fsdp_model("mlp", seed=11)
    opt = opt_for(model.parameters(), "adam")
    msd, osd = get_state_dict(model, opt)
    dcp.load({"model": msd, "optim": osd}, checkpoint_id=os.path.join(CKPT, "ckpt"))
    set_state_dict(model, opt, model_state_dict=msd, optim_state_dict=osd)
    ref, _ = reference("mlp", "adam", HALF)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        check_close("ckpt_load", p, q, f"loaded {name}")
    fsdp_train(model, opt, range(HALF, STEPS))
    ref, _ = reference("mlp", "adam")
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        check_close("ckpt_load", p, q, f"trained on after loading: {name}")
    # the same checkpoint loads into a plain (unsharded) model too
    plain = M.make("mlp", seed=2)
    sd = {"model": plain.state_dict()}
    dcp.load(sd, checkpoint_id=os.path.join(CKPT, "ckpt"))
    ref, _ = reference("mlp", "adam", HALF)
    for (name, p), q in zip(plain.named_parameters(), ref.parameters()):
        check_close("ckpt_load", p, q, f"plain model from the sharded checkpoint: {name}")


def part_ckpt_async():
    """At 2 ranks: async_save a sharded checkpoint after half the steps, train on (FSDP2's
    collectives run while the save's run on its own communicator), queue a second save, and
    check each checkpoint holds the values of the moment it was asked for."""
    import ember.distributed.checkpoint as dcp
    from ember.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    model = fsdp_model("mlp")
    opt = opt_for(model.parameters(), "adam")
    fsdp_train(model, opt, range(HALF))
    msd, osd = get_state_dict(model, opt)
    first = dcp.async_save({"model": msd, "optim": osd, "step": HALF},
                           checkpoint_id=os.path.join(CKPT, "async1"))
    fsdp_train(model, opt, range(HALF, STEPS))
    msd, osd = get_state_dict(model, opt)
    second = dcp.async_save({"model": msd, "optim": osd, "step": STEPS},
                            checkpoint_id=os.path.join(CKPT, "async2"))
    assert type(first.result(timeout=60)).__name__ == "Metadata"
    second.result(timeout=60)
    for name, steps in (("async1", HALF), ("async2", STEPS)):
        fresh = fsdp_model("mlp", seed=11)
        fopt = opt_for(fresh.parameters(), "adam")
        fmsd, fosd = get_state_dict(fresh, fopt)
        sd = {"model": fmsd, "optim": fosd, "step": 0}
        dcp.load(sd, checkpoint_id=os.path.join(CKPT, name))
        assert sd["step"] == steps
        set_state_dict(fresh, fopt, model_state_dict=fmsd, optim_state_dict=fosd)
        ref, _ = reference("mlp", "adam", steps)
        for (pname, p), q in zip(fresh.named_parameters(), ref.parameters()):
            check_close("ckpt_async", p, q, f"{name} (saved after {steps} steps): {pname}")


PARTS = {"ckpt_async": part_ckpt_async, "zero": part_zero, "pipe": part_pipe,
         "pipe_multi": part_pipe_multi, "hsdp": part_hsdp, "fsdp": part_fsdp, "ckpt_save": part_ckpt_save,
         "ckpt_kill": part_ckpt_kill, "ckpt_load": part_ckpt_load}
for part in sys.argv[1:]:
    PARTS[part]()
    dist.barrier()
    print(f"SHARD_OK {part} {checks.get(part, 0)}", flush=True)
dist.destroy_process_group()
sys.exit(0)
