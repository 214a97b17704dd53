"""The feature network the image metrics are computed in: a small CNN trained on the data set.

For labelled data (digits, Fashion-MNIST, `.npz` arrays with a label array) `FeatureNet` is a
classifier trained on the train split with a fixed seed; its 64-d penultimate layer is the
feature space (like Inception's pool3 for ImageNet-like data, but for the data at hand) and its
predicted labels give the mode-coverage histogram. It is trained once and cached under
`cache_dir`, keyed by a hash of the training images, the labels and the settings; its test
accuracy is stored with it.

For unlabelled data (image folders, arrays without labels) the documented fallback is the same
CNN randomly initialised with the fixed seed and never trained: random convolutional features
still separate image distributions (Naeem et al. 2020 evaluate with random embeddings); it has
no labels, so no label histogram. Vector data needs no network: its features are its coordinates.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn
from configs.errors import InputError

Tensor = torch.Tensor
FEATURE_DIM = 64
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "scoresde", "feature_nets")


class FeatureNet(nn.Module):
    """conv3x3(C->32) - conv3x3 s2(32->64) - conv3x3 s2(64->64) - global mean pool -> 64-d features
    (SiLU after each conv, GroupNorm after the last two), then a linear classifier head.
    Any image size >= 4 works."""

    def __init__(self, num_channels: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_channels, 32, 3, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GroupNorm(8, 64), nn.SiLU(),
            nn.Conv2d(64, FEATURE_DIM, 3, stride=2, padding=1), nn.GroupNorm(8, FEATURE_DIM), nn.SiLU())
        self.head = nn.Linear(FEATURE_DIM, max(num_classes, 1))

    def features(self, x: Tensor) -> Tensor:
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@dataclass
class FeatureSettings:
    """What the cache key covers besides the data."""
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0

    def as_dict(self):
        return dict(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                    arch="FeatureNet-v1", feature_dim=FEATURE_DIM)


@dataclass
class FeatureExtractor:
    """A feature map for one data set: `features(x)` `[n, d]` and, if labelled, `predict(x)` `[n]`."""
    kind: str                      # "classifier" | "random_cnn" | "identity"
    net: Optional[FeatureNet] = None
    num_classes: int = 0
    info: dict = field(default_factory=dict)

    @torch.no_grad()
    def features(self, x: Tensor, batch_size: int = 1000) -> Tensor:
        if self.net is None:
            return x.reshape(x.shape[0], -1).double()
        return torch.cat([self.net.features(x[i:i + batch_size].float()).double()
                          for i in range(0, x.shape[0], batch_size)])

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 1000) -> Optional[Tensor]:
        if self.kind != "classifier":
            return None
        return torch.cat([self.net(x[i:i + batch_size].float()).argmax(1)
                          for i in range(0, x.shape[0], batch_size)])


def _key(train: Tensor, labels: Optional[Tensor], settings: FeatureSettings) -> str:
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(train.numpy()).tobytes())
    h.update(str(tuple(train.shape)).encode())
    if labels is not None:
        h.update(np.ascontiguousarray(labels.numpy().astype(np.int64)).tobytes())
    h.update(json.dumps(settings.as_dict(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def _seeded_net(num_channels: int, num_classes: int, seed: int) -> FeatureNet:
    """FeatureNet initialised from `seed` without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FeatureNet(num_channels, num_classes)


def train_classifier(train: Tensor, train_labels: Tensor, settings: FeatureSettings,
                     num_classes: int, num_levels: int = 256) -> FeatureNet:
    """Adam on cross-entropy over the train split, `settings.epochs` shuffled epochs, fixed seed.
    Inputs get uniform dequantisation noise of one bin of the data's `num_levels` levels (width
    2/L in model space), so the net sees every value of a bin."""
    g = torch.Generator().manual_seed(settings.seed)
    net = _seeded_net(train.shape[1], num_classes, settings.seed)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.epochs)
    n = train.shape[0]
    net.train()
    for _ in range(settings.epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, settings.batch_size):
            idx = perm[i:i + settings.batch_size]
            x = train[idx] + (torch.rand(train[idx].shape, generator=g) - 0.5) * (2.0 / num_levels)
            loss = nn.functional.cross_entropy(net(x), train_labels[idx].long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return net.eval()


def get_feature_extractor(ds, labels: Optional[Tuple[Tensor, Tensor]], cache_dir: str = "",
                          settings: Optional[FeatureSettings] = None, log=print) -> FeatureExtractor:
    """The feature map for data set `ds` (a `training.data.Dataset`).

    labels: (train_labels, test_labels) or None. Images with labels get the cached classifier
    (trained here on first use), images without get the random CNN, vectors the identity.
    """
    if not ds.is_image:
        return FeatureExtractor("identity", info={"kind": "identity", "note": "vector data: raw coordinates"})
    settings = settings or FeatureSettings()
    if labels is None:
        net = _seeded_net(ds.shape[0], 1, settings.seed).eval()
        return FeatureExtractor("random_cnn", net, 0, {"kind": "random_cnn", "seed": settings.seed,
                                "note": "no labels: randomly initialised FeatureNet (fixed seed), untrained"})
    ytr, yte = (torch.as_tensor(y).long() for y in labels)
    if ytr.shape[0] != ds.train.shape[0] or yte.shape[0] != ds.test.shape[0]:
        raise InputError(f"labels ({ytr.shape[0]} train, {yte.shape[0]} test) do not match the data "
                         f"({ds.train.shape[0]} train, {ds.test.shape[0]} test)")
    num_classes = int(max(ytr.max(), yte.max())) + 1
    cache_dir = cache_dir or DEFAULT_CACHE
    key = _key(ds.train, ytr, settings)
    path = os.path.join(cache_dir, f"{ds.name}-{key}.pt")
    if os.path.exists(path):
        blob = torch.load(path, map_location="cpu", weights_only=False)
        net = FeatureNet(ds.shape[0], blob["num_classes"])
        net.load_state_dict(blob["state_dict"])
        info = blob["info"]
    else:
        log(f"training the feature classifier for {ds.name!r} ({ds.train.shape[0]} images, "
            f"{settings.epochs} epochs); cached in {path}")
        net = train_classifier(ds.train, ytr, settings, num_classes, ds.num_levels or 256)
        with torch.no_grad():
            acc = float(torch.cat([net(ds.test[i:i + 1000]).argmax(1)
                                   for i in range(0, ds.test.shape[0], 1000)]).eq(yte).double().mean())
        info = {"kind": "classifier", "test_accuracy": acc, "num_test": int(yte.shape[0]),
                "settings": settings.as_dict(), "key": key, "path": path}
        os.makedirs(cache_dir, exist_ok=True)
        tmp = path + ".tmp"
        torch.save({"state_dict": net.state_dict(), "num_classes": num_classes, "info": info}, tmp)
        os.replace(tmp, path)
        log(f"feature classifier test accuracy {acc:.4f}")
    return FeatureExtractor("classifier", net.eval(), num_classes, info)
