"""Inception-v3 FID/KID for 3-channel images of at least 32x32, through the optional extra
`pip install -e ".[fid]"` (pytorch-fid). Never imported by a default path: `compare.inception=True`
asks for it. pytorch-fid fetches its FID Inception weights on first use (a download the user
opted into); nothing here downloads anything by itself."""
from __future__ import annotations

import torch
from configs.errors import InputError

Tensor = torch.Tensor
INSTALL_HINT = ('Inception FID/KID needs the optional extra: pip install -e ".[fid]" '
                "(pytorch-fid; its Inception weights are fetched on first use)")


def check_inception_shape(shape) -> None:
    """Inception metrics are defined for RGB images of at least 32x32 (they are resized to 299)."""
    if len(shape) != 3 or shape[0] != 3 or min(shape[1:]) < 32:
        raise InputError(f"Inception FID/KID needs 3-channel images of at least 32x32, got data of shape "
                         f"{tuple(shape)}; use the data set's own feature network (the default) instead")


class InceptionFeatures:
    """2048-d pool3 features of pytorch-fid's FID Inception for model-space images in [-1, 1]."""

    def __init__(self, device="cpu"):
        try:
            from pytorch_fid.inception import InceptionV3
        except ImportError:
            raise InputError(INSTALL_HINT) from None
        self.net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True,
                               normalize_input=True).eval().to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, x: Tensor, batch_size: int = 100) -> Tensor:
        check_inception_shape(tuple(x.shape[1:]))
        out = []
        for i in range(0, x.shape[0], batch_size):
            xb = ((x[i:i + batch_size].float() + 1) / 2).clamp(0, 1).to(self.device)   # [0, 1] as expected
            out.append(self.net(xb)[0].flatten(1).double().cpu())
        return torch.cat(out)
