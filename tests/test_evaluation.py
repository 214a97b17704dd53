"""Image/sample metrics against closed forms, their floors, and corruptions of real digits."""
import math

import numpy as np
import pytest
import torch

from evaluation import (FeatureSettings, SampleEvaluator, density_coverage, frechet_distance,
                        get_feature_extractor, kernel_inception_distance, label_histogram_tv, precision_recall)
from evaluation.metrics import _mmd2_unbiased


def _gauss(n, d, gen, shift=0.0, scale=1.0):
    return shift + scale * torch.randn(n, d, generator=gen, dtype=torch.float64)


def test_frechet_distance_matches_the_closed_form(gen):
    """FD of two sets = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2) of their sample moments (scipy sqrtm)."""
    import scipy.linalg
    a = _gauss(300, 5, gen) @ torch.randn(5, 5, generator=gen, dtype=torch.float64)
    b = _gauss(200, 5, gen, shift=0.7)
    mu1, mu2 = a.mean(0).numpy(), b.mean(0).numpy()
    s1, s2 = np.cov(a.numpy().T), np.cov(b.numpy().T)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # population value for N(0, I) vs N(m, 4 I) in d dims: |m|^2 + d (1 + 4 - 2*2) = |m|^2 + d
    big_a, big_b = _gauss(20000, 3, gen), _gauss(20000, 3, gen, shift=1.0, scale=2.0)
    assert frechet_distance(big_a, big_b) == pytest.approx(3 + 3, rel=0.03)


def test_kid_is_unbiased_on_two_draws_of_one_gaussian(gen):
    """Mean of the KID estimate over 200 independent pairs of draws of N(0, I) is 0 within 4 SE; the
    biased (V-statistic) estimate, which keeps the diagonal, is clearly positive on the same draws."""
    kids, biased = [], []
    for _ in range(200):
        a, b = _gauss(120, 8, gen), _gauss(120, 8, gen)
        kids.append(kernel_inception_distance(a, b, subset_size=40, generator=gen)[0])
        k = lambda u, v: (u @ v.T / 8 + 1) ** 3
        biased.append(float(k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean()))
    kids, biased = np.array(kids), np.array(biased)
    se = kids.std(ddof=1) / math.sqrt(len(kids))
    assert abs(kids.mean()) < 4 * se
    assert biased.mean() > 10 * biased.std(ddof=1) / math.sqrt(len(biased))


def test_kid_standard_error_is_calibrated_and_detects_a_shift(gen):
    """The reported SE of the subset mean matches the spread of KID over repeated draws (within 35%),
    and a shift of 0.5 sd in 8 dims is many SE above zero."""
    vals, ses = [], []
    for _ in range(60):
        v, se = kernel_inception_distance(_gauss(400, 8, gen), _gauss(400, 8, gen, shift=0.3), generator=gen)
        vals.append(v)
        ses.append(se)
    assert np.mean(ses) == pytest.approx(np.std(vals, ddof=1), rel=0.35)
    v, se = kernel_inception_distance(_gauss(400, 8, gen), _gauss(400, 8, gen, shift=0.5), generator=gen)
    assert v > 5 * se


def test_precision_recall_density_coverage_known_values(gen):
    """Same distribution: density ~ 1 and coverage ~ 1 - 2^-k (Naeem et al. 2020); a sample set
    collapsed onto one half of the reference has full precision but loses recall and coverage."""
    a, b = _gauss(2000, 4, gen), _gauss(2000, 4, gen)
    dc = density_coverage(a, b, k=5)
    assert dc["density"] == pytest.approx(1.0, abs=0.06)
    assert dc["coverage"] == pytest.approx(1 - 0.5 ** 5, abs=0.02)
    pr = precision_recall(a, b, k=3)
    assert pr["precision"] > 0.85 and pr["recall"] > 0.85
    half = b[b[:, 0] > 0]
    pr_h, dc_h = precision_recall(a, half, k=3), density_coverage(a, half, k=5)
    assert pr_h["precision"] > 0.85 and pr_h["recall"] < 0.65 and dc_h["coverage"] < 0.65
    far = _gauss(500, 4, gen, shift=10.0)
    assert precision_recall(a, far)["precision"] == 0.0 and density_coverage(a, far)["coverage"] == 0.0


def test_label_histogram_tv():
    ref = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert label_histogram_tv(ref, ref.flip(0), 4) == 0.0
    assert label_histogram_tv(ref, torch.tensor([0, 1, 2, 2]), 4) == pytest.approx(0.25)   # class 3 dropped
    assert label_histogram_tv(ref, torch.tensor([0, 0, 0, 0]), 4) == pytest.approx(0.75)


@pytest.mark.parametrize("bad,msg", [(torch.zeros(5), "feature tensor"), (torch.zeros(1, 3), "at least 2 rows"),
                                     (torch.full((4, 3), float("nan")), "NaN"), (torch.zeros(4, 2), "dimensions differ")])
def test_metric_input_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        frechet_distance(torch.randn(4, 3), bad)


def test_torchmetrics_and_prdc_agree_when_installed(gen):
    """Cross-check against the libraries we chose not to depend on (skipped if absent)."""
    tm_fid = pytest.importorskip("torchmetrics.image.fid")
    tm_kid = pytest.importorskip("torchmetrics.image.kid")
    a, b = _gauss(300, 6, gen), _gauss(250, 6, gen, shift=0.3, scale=1.2)
    theirs = tm_fid._compute_fid(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))
    assert frechet_distance(a, b) == pytest.approx(float(theirs), rel=1e-6)
    ours = _mmd2_unbiased(a[None, :100], b[None, :100])[0]
    assert float(ours) == pytest.approx(float(tm_kid.poly_mmd(a[:100], b[:100], degree=3, gamma=1 / 6, coef=1.0)),
                                        rel=1e-6)
    prdc = pytest.importorskip("prdc")
    theirs = prdc.compute_prdc(a.numpy(), b.numpy(), nearest_k=5)
    dc = density_coverage(a, b, k=5)
    assert dc["density"] == pytest.approx(theirs["density"]) and dc["coverage"] == pytest.approx(theirs["coverage"])
    theirs3 = prdc.compute_prdc(a.numpy(), b.numpy(), nearest_k=3)
    pr = precision_recall(a, b, k=3)
    assert pr["precision"] == pytest.approx(theirs3["precision"]) and pr["recall"] == pytest.approx(theirs3["recall"])


# ---- on the digits, with the trained feature classifier ---------------------------------------

@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from configs.default import get_config
    from training.data import get_dataset
    cfg = get_config()
    ds = get_dataset(cfg)
    logs = []
    fx = get_feature_extractor(ds, ds.labels, str(tmp_path_factory.mktemp("feat")),
                               FeatureSettings(epochs=12), log=logs.append)
    return cfg, ds, fx, logs


def test_digit_labels_follow_the_data_split_and_the_classifier_is_cached(digits, tmp_path):
    """Accuracy ~99% only if labels line up with the images of the fixed split (~10% otherwise);
    a second request loads the cached net (no training) with the same features."""
    cfg, ds, fx, logs = digits
    assert fx.kind == "classifier" and fx.num_classes == 10
    assert fx.info["test_accuracy"] > 0.95 and any("training the feature classifier" in m for m in logs)
    again_logs = []
    folder = fx.info["path"].rsplit("/", 1)[0]
    fx2 = get_feature_extractor(ds, ds.labels, folder, FeatureSettings(epochs=12), log=again_logs.append)
    assert not again_logs and torch.equal(fx2.features(ds.test[:20]), fx.features(ds.test[:20]))


def _blur(x, sigma):
    k = torch.exp(-0.5 * (torch.arange(-2, 3, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum())
    w = (k[:, None] * k[None, :])[None, None]
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate"), w)


def test_corruptions_score_worse_monotonically(digits):
    """Train digits vs the test split sit at the floor; blurred, shifted and mode-dropped digits score
    worse in FD and KID, monotonically in the strength; dropping classes raises the label TV."""
    cfg, ds, fx, _ = digits
    ev = SampleEvaluator(ds.test, fx, num_levels=ds.num_levels, seed=0)
    clean = ds.train[:359]
    base = ev.evaluate(clean)
    ytr = ds.labels[0]

    def scores(sets):
        return [ev.evaluate(x) for x in sets]
    blurred = scores([_blur(clean, s) for s in (0.6, 1.0, 2.0)])
    # a roll by 3 of an 8-px digit saturates every metric (FD 25.1 vs 25.8 at 2 px): two strengths
    shifted = scores([torch.roll(clean, s, dims=3) for s in (1, 2)])
    dropped = scores([ds.train[(ytr >= c)][:359] for c in (2, 5, 8)])      # classes 0..c-1 removed
    for series in (blurred, shifted, dropped):
        fds = [base["fd"]] + [r["fd"] for r in series]
        kids = [base["kid"]] + [r["kid"] for r in series]
        assert all(x < y for x, y in zip(fds, fds[1:])), fds
        assert all(x < y for x, y in zip(kids, kids[1:])), kids
        assert series[0]["fd"] > base["fd"] + 0.3 and series[0]["kid"] > base["kid"] + 3 * series[0]["kid_se"]
    tvs = [base["label_tv"]] + [r["label_tv"] for r in dropped]
    assert all(x < y for x, y in zip(tvs, tvs[1:])) and tvs[-1] > 0.7
    covs = [base["coverage"]] + [r["coverage"] for r in dropped]
    assert all(x > y for x, y in zip(covs, covs[1:]))


def test_unlabelled_images_fall_back_to_a_random_cnn_and_vectors_to_coordinates(digits, tmp_path):
    from training.data import Dataset
    _, ds, _, _ = digits
    unl = Dataset("folder", ds.train, ds.test, is_image=True, eight_bit=True)
    fx = get_feature_extractor(unl, None, str(tmp_path))
    assert fx.kind == "random_cnn" and fx.predict(ds.test[:5]) is None and not list(tmp_path.iterdir())
    ev = SampleEvaluator(ds.test, fx, num_levels=ds.num_levels, seed=0)
    assert ev.evaluate(ds.train[:359])["fd"] < ev.evaluate(_blur(ds.train[:359], 1.0))["fd"]
    vec = Dataset("moons", torch.randn(50, 2), torch.randn(50, 2), is_image=False, eight_bit=False)
    fxv = get_feature_extractor(vec, None)
    assert fxv.kind == "identity" and fxv.features(vec.test).shape == (50, 2)


def test_inception_metrics_need_the_extra_and_rgb_images():
    from evaluation.inception import InceptionFeatures, check_inception_shape
    with pytest.raises(ValueError, match="3-channel images of at least 32x32"):
        check_inception_shape((1, 8, 8))
    check_inception_shape((3, 32, 32))
    try:
        import pytorch_fid  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r'pip install -e "\.\[fid\]"'):
            InceptionFeatures()


def _write_idx(path, a):
    import struct
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes())


def test_fashion_mnist_and_npz_labels(tmp_path):
    """Labels come from the idx label files next to the images, and from an .npz `y` array split
    with the data's own permutation (label i stays with image i)."""
    from configs.default import get_config
    from training.data import get_dataset
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        img = rng.integers(0, 256, (n, 28, 28))
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte", img)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte", img[:, 0, 0] % 10)   # label = first pixel mod 10
    cfg = get_config()
    cfg.data.dataset, cfg.data.path, cfg.data.image_size = "fashion_mnist", str(tmp_path), 28
    ds = get_dataset(cfg)
    ytr, yte = ds.labels
    from training.data import model_to_uint8
    assert torch.equal(ytr, model_to_uint8(ds.train)[:, 0, 0, 0].long() % 10)
    assert torch.equal(yte, model_to_uint8(ds.test)[:, 0, 0, 0].long() % 10)
    x = rng.integers(0, 256, (50, 1, 8, 8)).astype(np.uint8)
    np.savez(tmp_path / "arr.npz", x=x, y=x[:, 0, 0, 0] % 7)
    cfg = get_config()
    cfg.data.dataset, cfg.data.path = "array", str(tmp_path / "arr.npz")
    ds = get_dataset(cfg)
    ytr, yte = ds.labels
    assert torch.equal(ytr, model_to_uint8(ds.train)[:, 0, 0, 0].long() % 7)
    assert torch.equal(yte, model_to_uint8(ds.test)[:, 0, 0, 0].long() % 7)
    np.savez(tmp_path / "bad.npz", x=x, y=np.arange(3))
    cfg.data.path = str(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="one per example"):
        get_dataset(cfg)
