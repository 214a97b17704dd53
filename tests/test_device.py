"""config.device resolution, mixed precision (bf16 autocast runs on CPU; fp16 with a GradScaler),
channels_last, generators on the device, and the held-out loss against its closed form."""

import pytest
import torch

import configs.default as default
from training import train
from training.device import AutocastModule, resolve_device


def tiny(**training):
    c = default.get_config()
    c.device = "cpu"
    c.data.dataset, c.data.num_train, c.data.num_test = "moons", 256, 64
    c.model.name, c.model.hidden, c.model.num_blocks, c.model.embed_dim = "mlp", 16, 1, 8
    c.training.update(dict(batch_size=32, n_iters=3, snapshot_freq=3, log_freq=1, warmup=0, lr=1e-2,
                           progress=False, grad_clip=0.0))
    c.training.update(training)
    return c


def test_resolve_device_here_and_with_a_pretend_gpu(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        for name in ("cuda", "cuda:1"):
            with pytest.raises(ValueError, match="CUDA is not available"):
                resolve_device(name)
    for bad in ("gpu", "cuda:", "CUDA", "cuda:-1", "", None, 0):
        with pytest.raises(ValueError, match="config.device must be"):
            resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)    # torchrun: this rank's GPU
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="only 2 CUDA device"):
        resolve_device("cuda:2")


def _first_loss_and_dtype(precision, tmp_path):
    """Loss of the third step (the output layer starts at zero: the first loss is ||z||^2 whatever
    the precision) and the dtypes the network's layers computed in."""
    seen = []
    state = None
    c = tiny(precision=precision, n_iters=3, snapshot_freq=3)
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: seen.append(o.dtype) if isinstance(m, torch.nn.Linear) and torch.is_grad_enabled() else None)
    try:
        state = train(c, str(tmp_path / precision))
    finally:
        handle.remove()
    import json
    row = json.loads(open(tmp_path / precision / "metrics.jsonl").readlines()[-1])
    return row["loss"], set(seen), state


def test_bf16_autocast_trains_on_cpu_close_to_fp32(tmp_path):
    l32, d32, _ = _first_loss_and_dtype("fp32", tmp_path)
    l16, d16, s16 = _first_loss_and_dtype("bf16", tmp_path)
    assert d32 == {torch.float32} and d16 == {torch.bfloat16}
    assert l16 != l32 and abs(l16 - l32) < 0.05 * l32         # bf16 has ~3 significant digits
    assert all(p.dtype == torch.float32 for p in s16.model.parameters())      # master weights stay fp32
    assert all(p.dtype == torch.float32 for p in s16.ema.model.parameters())


def test_fp16_uses_a_grad_scaler_and_resumes(tmp_path):
    wd = str(tmp_path / "fp16")
    s = train(tiny(precision="fp16", n_iters=2, snapshot_freq=2), wd)
    ck = torch.load(s.checkpoint, weights_only=True)
    assert ck["grad_scaler"]["scale"] > 1 and ck["world_size"] == 1
    s2 = train(tiny(precision="fp16", n_iters=4, snapshot_freq=2), wd)
    assert s2.step == 4 and all(torch.isfinite(p).all() for p in s2.model.parameters())


def test_autocast_module_returns_float32():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)

        def forward(self, x, t):
            return self.lin(x)
    m = AutocastModule(Net(), torch.device("cpu"), "bf16")
    y = m(torch.randn(2, 3), torch.zeros(2))
    assert y.dtype == torch.float32
    seen = []
    m.module.lin.register_forward_hook(lambda mod, i, o: seen.append(o.dtype))
    m(torch.randn(2, 3), torch.zeros(2))
    assert seen == [torch.bfloat16]


def test_channels_last_gives_the_same_training(tmp_path):
    def unet(**t):
        c = default.get_config()
        c.device = "cpu"
        c.model.nf, c.model.num_groups = 8, 4
        c.training.update(dict(batch_size=8, n_iters=2, snapshot_freq=2, log_freq=1, progress=False, **t))
        return c
    a = train(unet(), str(tmp_path / "a"))
    b = train(unet(channels_last=True), str(tmp_path / "b"))
    conv = next(p for p in b.model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_heldout_loss_matches_closed_form():
    """Data N(0, I_D) under VP has p_t = N(0, I) and the exact noise prediction s(t) x_t; then
    s score + z = m (m z - s x0), so the expected DSM loss is D E_t[m(t)^2], t ~ U(eps, 1)."""
    import sde_lib
    from training.data import Dataset
    from training.monitor import Monitor
    c = tiny()
    sde = sde_lib.get_sde(c)

    class Exact(torch.nn.Module):
        def forward(self, x, t):
            return sde.marginal_coeffs(t)[1][:, None] * x

    class FakeEMA:
        model = Exact()
    D, n = 3, 4000
    g = torch.Generator().manual_seed(0)
    ds = Dataset("gauss", torch.randn(10, D, generator=g), torch.randn(n, D, generator=g), False, False)
    c.training.eval_num_samples = n
    mean, se = Monitor(c, sde, ds, FakeEMA(), torch.device("cpu"), None).heldout_loss()
    t = torch.linspace(sde.eps, 1.0, 20001, dtype=torch.float64)
    m2 = sde.marginal_coeffs(t)[0] ** 2
    expected = D * torch.trapezoid(m2, t).item() / (1 - sde.eps)
    assert abs(mean - expected) < 4 * se and se < 0.05 * expected
    # the same examples, t and z at every call (common random numbers)
    assert Monitor(c, sde, ds, FakeEMA(), torch.device("cpu"), None).heldout_loss() == (mean, se)


@pytest.mark.slow
def test_compile_flag_trains(tmp_path):
    s = train(tiny(compile=True, n_iters=2, snapshot_freq=2), str(tmp_path))
    assert s.step == 2 and all(torch.isfinite(p).all() for p in s.model.parameters())
