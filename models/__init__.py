"""Score networks (U-Net for images, residual MLP for vectors), the exact
Gaussian-mixture score, and the adapter from a network to a `score_fn`.

Imports sde_lib only (never solvers or training).
"""
from .analytic import GaussianMixture
from .classifier import CLASSIFIERS, EncoderClassifier, MLPClassifier, get_classifier, get_classifier_fn
from .mlp import ScoreMLP
from .unet import UNet
from .discrete import DiscreteTimeLabel
from .parameterization import Parameterization
from .utils import (get_model, get_restore_fn, get_score_fn, model_names, noise_label, parameterization_of,
                    register_model)

_FAMILY_DEFAULTS = {
    # NCSN++: Fourier embedding of the noise label, BigGAN-style resampling blocks.
    "ncsnpp": dict(embedding_type="fourier", resblock_type="biggan", skip_rescale=True),
    # DDPM++: sinusoidal embedding of t, DDPM resampling (strided conv / nearest + conv).
    "ddpmpp": dict(embedding_type="positional", resblock_type="ddpm", skip_rescale=True),
}


def _unet_builder(family):
    def build(config):
        m = config.model
        kw = dict(_FAMILY_DEFAULTS[family])
        for key in ("embedding_type", "resblock_type", "skip_rescale"):
            if m[key] is not None:
                kw[key] = m[key]
        return UNet(image_size=config.data.image_size, num_channels=config.data.num_channels,
                    nf=m.nf, ch_mult=tuple(m.ch_mult), num_res_blocks=m.num_res_blocks,
                    attn_resolutions=tuple(m.attn_resolutions), dropout=m.dropout,
                    fourier_scale=m.fourier_scale, positional_scale=m.positional_scale,
                    num_groups=m.num_groups, resamp_with_conv=m.resamp_with_conv, num_classes=m.num_classes, **kw)
    return build


register_model("ncsnpp")(_unet_builder("ncsnpp"))
register_model("ddpmpp")(_unet_builder("ddpmpp"))


@register_model("mlp")
def _build_mlp(config):
    m = config.model
    return ScoreMLP(dim=config.data.dim, hidden=m.hidden, num_blocks=m.num_blocks, dropout=m.dropout,
                    embedding_type=m.embedding_type or "fourier", embed_dim=m.embed_dim,
                    fourier_scale=m.fourier_scale, positional_scale=m.positional_scale, num_classes=m.num_classes)


__all__ = ["CLASSIFIERS", "DiscreteTimeLabel", "EncoderClassifier", "MLPClassifier", "get_classifier",
           "get_classifier_fn", "GaussianMixture", "Parameterization", "ScoreMLP", "UNet", "get_model",
           "get_restore_fn", "get_score_fn", "model_names", "noise_label", "parameterization_of", "register_model"]
