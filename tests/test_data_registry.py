"""The data set registry: a new data set is one function and one registration, and its labels and
levels come from that function only."""
import numpy as np
import pytest
import torch

from configs.default import get_default_config
from configs.errors import ConfigError
from configs.schema import validate_data
from training.data import (DATASETS, Dataset, discrete_dataset, get_dataset, register_dataset,
                           unregister_dataset)
from training.levels import model_to_uint8


def sample_image_patches(d) -> Dataset:
    """32x32 RGB patches of sklearn's two bundled sample images; label: which image."""
    from sklearn.datasets import load_sample_images
    patches, labels = [], []
    for k, img in enumerate(load_sample_images().images):          # [427, 640, 3] uint8 each
        H, W = (s // 32 * 32 for s in img.shape[:2])
        p = img[:H, :W].reshape(H // 32, 32, W // 32, 32, 3).transpose(0, 2, 4, 1, 3).reshape(-1, 3, 32, 32)
        patches.append(p)
        labels.append(np.full(len(p), k))
    return discrete_dataset("grid_patches", np.concatenate(patches), d, labels=np.concatenate(labels),
                            class_names=("china", "flower"))


@pytest.fixture
def patches_registered():
    register_dataset("grid_patches", sample_image_patches)
    yield
    unregister_dataset("grid_patches")


def test_a_colour_data_set_is_one_function_and_one_registration(patches_registered):
    cfg = get_default_config()
    cfg.data.dataset, cfg.data.image_size, cfg.data.num_channels = "grid_patches", 32, 3
    validate_data(cfg)                                  # the schema knows the new name
    ds = get_dataset(cfg)
    assert ds.shape == (3, 32, 32) and ds.num_levels == 256 and ds.discrete
    assert ds.num_classes == 2 and ds.class_names == ("china", "flower")
    n = ds.train.shape[0] + ds.test.shape[0]
    assert n == 2 * 13 * 20 and ds.test.shape[0] == round(0.2 * n)
    # labels travel with their images through the split: rebuild the (patch -> image) map
    from sklearn.datasets import load_sample_images
    source = {img[i:i + 32, j:j + 32].tobytes(): k for k, img in enumerate(load_sample_images().images)
              for i in range(0, 416, 32) for j in range(0, 640, 32)}
    for x, y in ((ds.train, ds.train_labels), (ds.test, ds.test_labels)):
        u = model_to_uint8(x).permute(0, 2, 3, 1).contiguous().numpy()
        assert [source[patch.tobytes()] for patch in u] == y.tolist()
    cfg.data.num_levels = 16                            # fewer 8-bit levels: refused off the level grid
    with pytest.raises(ValueError, match="not one of the 16 levels"):
        get_dataset(cfg)


def test_registry_refuses_duplicates_and_unknown_names(patches_registered):
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("grid_patches", sample_image_patches)
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("sample_patches", sample_image_patches)
    cfg = get_default_config()
    cfg.data.dataset = "no_such_set"
    with pytest.raises(ConfigError, match="config.data.dataset must be one of"):
        get_dataset(cfg)


def test_one_source_of_labels_and_levels():
    """Every built-in data set that has labels carries them on the Dataset (nothing else holds labels),
    with one label per example, and discrete sets carry their levels."""
    cfg = get_default_config()
    ds = get_dataset(cfg)
    assert ds.labels is not None and ds.num_levels == 17
    assert ds.train_labels.shape == (ds.train.shape[0],) and ds.test_labels.shape == (ds.test.shape[0],)
    cfg.data.dataset, cfg.data.dim, cfg.data.num_train, cfg.data.num_test = "moons", 2, 100, 50
    ds = get_dataset(cfg)
    assert ds.labels is None and ds.num_levels is None and not ds.discrete
    assert set(DATASETS) >= {"moons", "8gaussians", "checkerboard", "swissroll", "mixture", "digits",
                             "fashion_mnist", "sample_patches", "folder", "array"}


def test_uint8_vectors_from_an_array_are_discrete(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (40, 3)).astype(np.uint8)
    np.savez(tmp_path / "v.npz", x=a, y=np.arange(40) % 2)
    cfg = get_default_config()
    cfg.data.dataset, cfg.data.path, cfg.data.dim = "array", str(tmp_path / "v.npz"), 3
    ds = get_dataset(cfg)
    assert not ds.is_image and ds.num_levels == 256 and ds.num_classes == 2
    back = torch.cat([model_to_uint8(ds.train), model_to_uint8(ds.test)]).numpy()
    assert sorted(map(tuple, back)) == sorted(map(tuple, a))


def test_sample_patches_train_and_test_share_no_pixel():
    """The registered colour set: each patch is the photograph's pixels at its seeded corner, train
    corners lie left of column 480 and test corners right of it (so no pixel is in both), labels travel."""
    from sklearn.datasets import load_sample_images
    from training.readers import SAMPLE_PATCH_TEST_COLUMN, sample_patch_corners
    cfg = get_default_config()
    cfg.data.dataset, cfg.data.image_size, cfg.data.num_channels = "sample_patches", 32, 3
    ds = get_dataset(cfg)
    assert ds.shape == (3, 32, 32) and ds.num_levels == 256 and ds.class_names == ("china", "flower")
    images = load_sample_images().images
    tr, te = sample_patch_corners(cfg.data.split_seed, ds.train.shape[0], ds.test.shape[0])
    assert (tr[:, 2] + 32 <= SAMPLE_PATCH_TEST_COLUMN).all() and (te[:, 2] >= SAMPLE_PATCH_TEST_COLUMN).all()
    assert len({tuple(c) for c in tr}) > 0.99 * len(tr)          # seeded, spread corners
    for x, y, corners in ((ds.train, ds.train_labels, tr), (ds.test, ds.test_labels, te)):
        u = model_to_uint8(x).permute(0, 2, 3, 1).numpy()
        for i in range(0, len(corners), 97):
            k, r, c = corners[i]
            assert (u[i] == images[k][r:r + 32, c:c + 32]).all() and y[i] == k
    cfg.data.split_seed = 1                                       # another seed: other corners
    assert not torch.equal(get_dataset(cfg).train[:10], ds.train[:10])
