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

# U-Net options of the published networks (models/unet.py), all off unless a family or config sets them
_OPTIONS = dict(up_attention="per_block", resample_skip_conv=False, fourier_mult=1, fir=False,
                fir_kernel=(1, 3, 3, 1), progressive="none", progressive_input="none", progressive_combine="sum",
                downsample_padding="symmetric", exact_groups=False, fourier_product="2pi_l_W",
                center_input=False)
_FAMILY_DEFAULTS = {
    # NCSN++: Fourier embedding of the noise label, BigGAN-style resampling blocks.
    "ncsnpp": dict(embedding_type="fourier", resblock_type="biggan", skip_rescale=True),
    # DDPM++: sinusoidal embedding of t, DDPM resampling (strided conv / nearest + conv).
    "ddpmpp": dict(embedding_type="positional", resblock_type="ddpm", skip_rescale=True),
    # DDPM (Ho et al. 2020) as score_sde_pytorch's models/ddpm.py builds it: no skip rescaling, one
    # attention per up level, TF-style strided-conv padding, exactly 32 GroupNorm groups.
    "ddpm": dict(embedding_type="positional", resblock_type="ddpm", skip_rescale=False, up_attention="per_level",
                 downsample_padding="right_bottom", exact_groups=True),
    # DDPM as diffusers' UNet2DModel lays out google/ddpm-* (AttnDownBlock2D / AttnUpBlock2D at the
    # attention resolutions: attention after every res block, up path included).
    "diffusers_ddpm": dict(embedding_type="positional", resblock_type="ddpm", skip_rescale=False,
                           up_attention="per_block", downsample_padding="right_bottom", exact_groups=True),
}


def _text_options(m):
    """Prompt conditioning (models/text.py): absent fields (configs saved before it existed) mean none."""
    t = m.get("text", None)
    if not m.get("text_vocab_size", 0):
        return {}
    return dict(cross_attn_resolutions=tuple(m.cross_attn_resolutions), text_vocab_size=m.text_vocab_size,
                text_dim=t.dim, text_depth=t.depth, text_heads=t.heads, text_max_len=t.max_len,
                cross_attn_heads=t.cross_attn_heads)


def _unet_builder(family):
    def build(config):
        m = config.model
        kw = dict(_OPTIONS, **_FAMILY_DEFAULTS[family])
        for key in ("embedding_type", "resblock_type", "skip_rescale", *_OPTIONS):
            if m[key] is not None:
                kw[key] = tuple(m[key]) if key == "fir_kernel" else m[key]
        return UNet(image_size=config.data.image_size, num_channels=config.data.num_channels,
                    nf=m.nf, ch_mult=tuple(m.ch_mult), num_res_blocks=m.num_res_blocks,
                    attn_resolutions=tuple(m.attn_resolutions), dropout=m.dropout,
                    fourier_scale=m.fourier_scale, positional_scale=m.positional_scale,
                    num_groups=m.num_groups, resamp_with_conv=m.resamp_with_conv, num_classes=m.num_classes,
                    **_text_options(m), **kw)
    return build


for _family in _FAMILY_DEFAULTS:
    register_model(_family)(_unet_builder(_family))
@register_model("mlp")
def _build_mlp(config):
    m = config.model
    return ScoreMLP(dim=config.data.dim, hidden=m.hidden, num_blocks=m.num_blocks, dropout=m.dropout,
                    embedding_type=m.embedding_type or "fourier", embed_dim=m.embed_dim,
                    fourier_scale=m.fourier_scale, positional_scale=m.positional_scale, num_classes=m.num_classes)


__all__ = ["CLASSIFIERS", "DiscreteTimeLabel", "EncoderClassifier", "MLPClassifier", "get_classifier",
           "get_classifier_fn", "GaussianMixture", "Parameterization", "ScoreMLP", "UNet", "get_model",
           "get_restore_fn", "get_score_fn", "model_names", "noise_label", "parameterization_of", "register_model"]
