"""Class-conditional networks, label dropout, data labels and the noise-conditional classifier."""
import math
import os

import numpy as np
import pytest
import torch

import models
from configs.default import get_default_config
from models import ScoreMLP, UNet, get_score_fn
from sde_lib import VPSDE
from training.data import get_dataset, mixture_distribution
from training.labels import drop_labels


def _randomise(net):
    with torch.no_grad():
        net.label_embed.table.weight.normal_(generator=torch.Generator().manual_seed(0))


def test_conditional_nets_use_the_label():
    for net, x in ((UNet(image_size=8, num_channels=1, nf=8, ch_mult=(1,), attn_resolutions=(), num_groups=4,
                         num_classes=3), torch.randn(4, 1, 8, 8)),
                   (ScoreMLP(dim=2, hidden=16, num_blocks=1, num_classes=3), torch.randn(4, 2))):
        for p in net.parameters():      # zero-initialised output layers would hide the label
            if p.dim() > 0 and p.abs().sum() == 0:
                torch.nn.init.normal_(p, std=0.1)
        _randomise(net)
        net.eval()                      # dropout off: outputs are deterministic
        t = torch.full((4,), 0.5)
        y0, y1 = net(x, t, torch.zeros(4, dtype=torch.long)), net(x, t, torch.ones(4, dtype=torch.long))
        assert not torch.allclose(y0, y1)
        assert torch.equal(net(x, t, 2), net(x, t, torch.full((4,), 2)))
        assert torch.equal(net(x, t), net(x, t, 3))             # None = null label (index num_classes)
        with pytest.raises(ValueError, match=r"lie in \[0, 3\]"):
            net(x, t, torch.full((4,), 4))
        with pytest.raises(ValueError, match="integer tensor"):
            net(x, t, torch.zeros(4))
    plain = ScoreMLP(dim=2, hidden=16, num_blocks=1)
    with pytest.raises(ValueError, match="unconditional"):
        plain(torch.randn(4, 2), torch.full((4,), 0.5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="unconditional"):
        get_score_fn(VPSDE(), plain, y=1)
    with pytest.raises(ValueError, match="num_classes must be an int >= 0"):
        ScoreMLP(dim=2, num_classes=-1)


def test_get_score_fn_fixes_or_passes_labels():
    net = ScoreMLP(dim=2, hidden=16, num_blocks=1, num_classes=2)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    sde = VPSDE()
    x, t = torch.randn(5, 2), torch.full((5,), 0.3)
    assert torch.equal(get_score_fn(sde, net, y=1)(x, t), get_score_fn(sde, net)(x, t, y=1))
    assert torch.equal(get_score_fn(sde, net)(x, t), get_score_fn(sde, net, y=2)(x, t))


def test_label_dropout_rate():
    y = torch.zeros(20000, dtype=torch.long)
    d = drop_labels(y, 0.2, 7, torch.Generator().manual_seed(0))
    rate = (d == 7).double().mean().item()
    assert abs(rate - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 20000)
    assert set(d.unique().tolist()) == {0, 7}
    assert torch.equal(drop_labels(y, 0.0, 7), y) and (drop_labels(y, 1.0, 7) == 7).all()
    with pytest.raises(ValueError, match="label_dropout must lie in"):
        drop_labels(y, 1.5, 7)


def test_dataset_labels_digits_and_mixture():
    from sklearn.datasets import load_digits
    cfg = get_default_config()
    ds = get_dataset(cfg)
    assert ds.num_classes == 10 and ds.train_labels.shape == (ds.train.shape[0],)
    # each image keeps its own label through the split: match images back to sklearn's
    raw = load_digits()
    from training.data import model_to_levels
    u = raw.images.astype(np.int64) if ds.num_levels == 17 else np.round(raw.images * 255 / 16).astype(np.int64)
    lookup = {u[i].tobytes(): raw.target[i] for i in range(len(u))}
    img = model_to_levels(ds.test[:50, 0], ds.num_levels).numpy().astype(np.int64)
    assert all(lookup[img[i].tobytes()] == ds.test_labels[i].item() for i in range(50))
    cfg.data.dataset, cfg.data.dim, cfg.data.num_train, cfg.data.num_test = "mixture", 2, 500, 100
    cfg.data.mixture.means = ((-3.0, 0.0), (3.0, 0.0))
    cfg.data.mixture.stds = (0.3, 0.3)
    ds = get_dataset(cfg)
    assert ds.num_classes == 2
    assert torch.equal((ds.train[:, 0] > 0).long(), ds.train_labels)


def test_dataset_labels_from_class_subfolders(tmp_path):
    from PIL import Image
    for c, v in (("cat", 10), ("dog", 200)):
        os.makedirs(tmp_path / c)
        for i in range(5):
            Image.fromarray(np.full((4, 4), v + i, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    cfg = get_default_config()
    cfg.data.dataset, cfg.data.path, cfg.data.image_size, cfg.data.num_channels = "folder", str(tmp_path), 4, 1
    ds = get_dataset(cfg)
    assert ds.class_names == ("cat", "dog") and ds.num_classes == 2
    x = torch.cat([ds.train, ds.test])
    y = torch.cat([ds.train_labels, ds.test_labels])
    assert torch.equal((x[:, 0, 0, 0] > 0).long(), y)


def mixture_config():
    cfg = get_default_config()
    cfg.data.dataset, cfg.data.dim, cfg.data.num_train, cfg.data.num_test = "mixture", 2, 4000, 1000
    cfg.data.mixture.weights = (0.5, 0.5)
    cfg.data.mixture.means = ((-1.0, 0.0), (1.0, 0.0))
    cfg.data.mixture.stds = (0.6, 0.6)
    cfg.model.name = "mlp"
    cfg.classifier.name, cfg.classifier.num_classes = "mlp", 2
    cfg.classifier.hidden, cfg.classifier.num_blocks = 64, 2
    cfg.classifier.n_iters, cfg.classifier.batch_size, cfg.classifier.lr = 400, 256, 3e-3
    cfg.classifier.dropout = 0.0
    return cfg


def test_noise_conditional_classifier_learns_the_exact_posterior(tmp_path):
    """Trained on perturbed mixture data, the classifier approaches the exact log p_t(y | x):
    KL(exact || learned) averaged over x_t ~ p_t at several t is far below that of a constant
    (prior) classifier, the floor a net that ignored x would reach."""
    from training.classifier import restore_classifier, train_classifier
    cfg = mixture_config()
    net, report = train_classifier(cfg, str(tmp_path))
    assert os.path.exists(tmp_path / "classifier" / "classifier.json")
    sde = VPSDE()
    m = cfg.data.mixture
    gm = mixture_distribution(m.weights, m.means, m.stds)
    exact, learned = gm.classifier_fn(sde), models.get_classifier_fn(sde, restore_classifier(cfg, str(tmp_path))[0])
    g = torch.Generator().manual_seed(5)
    kls, kls_prior = [], []
    for tv in (0.05, 0.2, 0.4):
        x0 = gm.sample(2000, generator=g)
        t = torch.full((2000,), tv, dtype=torch.float64)
        mm, ss = sde.marginal_coeffs(t)
        xt = mm[:, None] * x0 + ss[:, None] * torch.randn(2000, 2, generator=g, dtype=torch.float64)
        le = exact(xt, t)
        with torch.no_grad():
            ll = torch.log_softmax(learned(xt.float(), t.float()), 1).double()
        kls.append((le.exp() * (le - ll)).sum(1).mean().item())
        kls_prior.append((le.exp() * (le - gm.weights.log())).sum(1).mean().item())
    assert all(k < 0.1 * kp for k, kp in zip(kls, kls_prior)), (kls, kls_prior)
    assert report["test_accuracy"]["0.0"]["accuracy"] > 0.9


def test_conditional_training_runs_and_checks_labels(tmp_path):
    from training import train
    cfg = mixture_config()
    cfg.model.num_classes, cfg.training.label_dropout = 2, 0.2
    cfg.training.n_iters, cfg.training.batch_size, cfg.training.progress = 3, 16, False
    state = train(cfg, str(tmp_path / "a"))
    assert state.model.num_classes == 2
    cfg.model.num_classes = 3
    with pytest.raises(ValueError, match="num_classes = 3 but data set 'mixture' has 2"):
        train(cfg, str(tmp_path / "b"))
    cfg.model.num_classes, cfg.data.dataset = 2, "moons"
    with pytest.raises(ValueError, match="needs class labels"):
        train(cfg, str(tmp_path / "c"))
    cfg.data.dataset, cfg.training.label_dropout = "mixture", 2.0
    with pytest.raises(ValueError, match="label_dropout"):
        train(cfg, str(tmp_path / "d"))


def test_conditional_resume_is_bit_exact(tmp_path):
    """Label dropout draws from the checkpointed generator: 6 steps = 3 steps + resume, with dropout in the net."""
    from training import train
    cfg = mixture_config()
    cfg.model.num_classes, cfg.training.label_dropout, cfg.model.dropout = 2, 0.5, 0.2
    cfg.training.batch_size, cfg.training.progress, cfg.training.snapshot_freq = 16, False, 3
    cfg.model.hidden, cfg.model.num_blocks = 16, 1
    cfg.training.n_iters = 6
    full = train(cfg, str(tmp_path / "a"))
    cfg.training.n_iters = 3
    train(cfg, str(tmp_path / "b"))
    cfg.training.n_iters = 6
    resumed = train(cfg, str(tmp_path / "b"))
    assert all(torch.equal(a, b) for a, b in zip(full.model.parameters(), resumed.model.parameters()))
    assert not torch.equal(full.model.label_embed.table.weight, torch.zeros_like(full.model.label_embed.table.weight))


def test_fashion_mnist_labels_from_idx_files(tmp_path):
    import struct

    def write_idx(path, arr):
        with open(path, "wb") as f:
            f.write(struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes())
    rng = np.random.default_rng(0)
    tr, te = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", tr)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", te)
    cfg = get_default_config()
    cfg.data.dataset, cfg.data.path, cfg.data.image_size = "fashion_mnist", str(tmp_path), 28
    assert get_dataset(cfg).train_labels is None          # no label files: an unlabelled set
    ytr, yte = np.arange(12, dtype=np.uint8) % 10, np.array([9, 8, 7, 6, 5], dtype=np.uint8)
    write_idx(tmp_path / "train-labels-idx1-ubyte", ytr)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", yte)
    ds = get_dataset(cfg)
    assert ds.num_classes == 10 and ds.train_labels.tolist() == ytr.tolist() and ds.test_labels.tolist() == yte.tolist()
