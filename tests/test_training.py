"""EMA, the training loop: resume determinism, NaN stop, metrics, config errors."""
import json
import os

import pytest
import torch

import configs.default as default
from configs.errors import ConfigError
from configs.schema import validate_training
from training import EMA, NonFiniteLossError, latest_checkpoint, restore_model, train


def tiny_config(**training):
    c = default.get_config()
    c.data.dataset = "moons"
    c.data.dim = 2
    c.data.num_train, c.data.num_test = 256, 64
    c.model.name = "mlp"
    c.model.hidden, c.model.num_blocks, c.model.embed_dim = 16, 1, 8
    c.model.dropout = 0.1   # exercise the global RNG state in resume
    c.training.batch_size = 16
    c.training.n_iters = 6
    c.training.snapshot_freq = 3
    c.training.log_freq = 2
    c.training.warmup = 2
    c.training.lr = 1e-2
    c.training.progress = False
    for k, v in training.items():
        c.training[k] = v
    return c


# ---- EMA ----------------------------------------------------------------------------------------

def test_ema_matches_closed_form_with_warmup():
    """Constant target theta, shadow0 = a: shadow_n = theta + prod_k d_k (a - theta)."""
    src = torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in src.parameters():
            p.fill_(1.0)
    ema = EMA(src, decay=0.99)
    with torch.no_grad():
        for p in src.parameters():
            p.fill_(3.0)
    prod = 1.0
    for n in range(50):
        prod *= min(0.99, (1 + n) / (10 + n))
        ema.update(src)
    expected = 3.0 + prod * (1.0 - 3.0)
    for p in ema.model.parameters():
        assert torch.allclose(p, torch.full_like(p, expected), atol=1e-6)
    # Without warm-up the initial weights linger: 0.99^50 ~ 0.6 of them remain.
    ema2 = EMA(torch.nn.Linear(3, 2), decay=0.99, warmup=False)
    assert ema2.current_decay() == 0.99
    assert ema.current_decay() == pytest.approx(min(0.99, 51 / 60))


def test_ema_state_roundtrip_and_bad_decay():
    src = torch.nn.Linear(2, 2)
    ema = EMA(src, 0.9)
    ema.update(src)
    other = EMA(torch.nn.Linear(2, 2), 0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1 and other.decay == 0.9
    for a, b in zip(other.model.parameters(), ema.model.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="decay"):
        EMA(src, 1.5)


# ---- loop ---------------------------------------------------------------------------------------

def _params(state):
    return [p.detach().clone() for p in state.model.parameters()] + \
           [p.detach().clone() for p in state.ema.model.parameters()]


def test_resume_reproduces_uninterrupted_run(tmp_path):
    full = train(tiny_config(), str(tmp_path / "a"))
    # interrupted: stop at step 3 (a checkpoint), then restart with the full budget
    part = train(tiny_config(n_iters=3), str(tmp_path / "b"))
    assert part.step == 3
    resumed = train(tiny_config(), str(tmp_path / "b"))
    assert resumed.step == 6
    for a, b in zip(_params(full), _params(resumed)):
        assert torch.equal(a, b)
    # the same seed from scratch gives the same run; another seed does not
    other = train(tiny_config(), str(tmp_path / "c"))
    assert all(torch.equal(a, b) for a, b in zip(_params(full), _params(other)))
    c = tiny_config()
    c.seed = 1
    different = train(c, str(tmp_path / "d"))
    assert not all(torch.equal(a, b) for a, b in zip(_params(full), _params(different)))


def test_checkpoints_kept_and_metrics_written(tmp_path):
    wd = str(tmp_path)
    train(tiny_config(n_iters=8, snapshot_freq=2, keep=2), wd)
    names = sorted(os.listdir(os.path.join(wd, "checkpoints")))
    assert names == ["checkpoint_000000006.pt", "checkpoint_000000008.pt"]
    rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert rows[0]["lr"] == pytest.approx(1e-2) and set(rows[0]) == {"step", "loss", "lr", "time"}
    model, step, _ = restore_model(tiny_config(), wd)
    assert step == 8 and not model.training


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    wd = str(tmp_path)
    train(tiny_config(n_iters=3), wd)
    ckpt = latest_checkpoint(os.path.join(wd, "checkpoints"))
    before = open(ckpt, "rb").read()
    c = tiny_config(n_iters=6)
    from training.data import get_dataset
    ds = get_dataset(c)
    ds.train[5:] = float("nan")    # poison all but a few examples: the first batch hits a NaN
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 4.*checkpoint_000000003\.pt"):
        train(c, wd, dataset=ds)
    assert latest_checkpoint(os.path.join(wd, "checkpoints")) == ckpt
    assert open(ckpt, "rb").read() == before


def test_bad_training_values_and_workdir_file(tmp_path):
    with pytest.raises(ConfigError, match="config.training.n_iters must be an int >= 0, got -5"):
        validate_training(tiny_config(n_iters=-5))       # run.py checks every config before any work
    f = tmp_path / "file"
    f.write_text("not a dir")
    with pytest.raises(ValueError, match="not a directory"):
        train(tiny_config(), str(f))


def test_resume_refuses_checkpoint_of_other_model(tmp_path):
    wd = str(tmp_path)
    train(tiny_config(n_iters=3), wd)
    c = tiny_config()
    c.model.hidden = 32
    with pytest.raises(ValueError, match="does not fit the model"):
        train(c, wd)


def _noise_labels_seen(c, wd, monkeypatch):
    """Train with config c and return every noise label the network was fed in training mode."""
    import models
    seen, real = [], models.get_model

    def spy(config):
        net = real(config)
        net.register_forward_pre_hook(lambda m, args: seen.append(args[1].detach().clone()) if m.training else None)
        return net
    monkeypatch.setattr("training.loop.get_model", spy)
    s = train(c, wd)
    return s, torch.cat(seen)


def test_discrete_ddpm_training_uses_the_discrete_levels(tmp_path, monkeypatch):
    """continuous=False trains DDPM on the N levels t_i = (i + 1)/N (the noise label of VP is t);
    the continuous loss draws t uniformly in [eps, 1] instead (the control)."""
    N = 50
    c = tiny_config(continuous=False, n_iters=4)
    c.sde.N, c.model.dropout = N, 0.0
    s, labels = _noise_labels_seen(c, str(tmp_path / "d"), monkeypatch)
    assert s.step == 4 and labels.numel() == 4 * c.training.batch_size
    k = labels.double() * N
    assert torch.allclose(k, k.round(), atol=1e-4) and k.round().min() >= 1 and k.round().max() <= N
    assert len(set(k.round().long().tolist())) > 20            # levels drawn across the range
    c.training.continuous = True
    _, labels = _noise_labels_seen(c, str(tmp_path / "c"), monkeypatch)
    k = labels.double() * N
    assert not torch.allclose(k, k.round(), atol=1e-4)
