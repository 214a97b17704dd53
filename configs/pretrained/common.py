"""Builders shared by the configs of published checkpoints (one file per checkpoint in this folder).

Each config reproduces the network of the reference code exactly (the parameter counts are
tested against the reference's: tests/test_pretrained_configs.py) and declares how its output
means a score (`model.prediction`, `model.label`, `model.data_range`: models/parameterization.py).
`config.pretrained` says where the weights come from; `python run.py --mode import --config
configs/pretrained/<name>.py --workdir W --config.pretrained.checkpoint=FILE` converts them
into a run directory (runner/importer.py; docs/guide/published-models.md).

Data: `data.dataset = "folder"` with an empty path; the samplers need no data, `eval` does:
pass `--config.data.path=<folder of the test images>` at import (data is fixed per run directory).
"""
import ml_collections

from configs.default import get_default_config


def _base(image_size: int, fmt: str, source: str, reference_config: str, parameters: int):
    config = get_default_config()
    config.data.dataset = "folder"
    config.data.path = ""
    config.data.image_size = image_size
    config.data.num_channels = 3
    config.pretrained = ml_collections.ConfigDict(dict(
        format=fmt,                    # score_sde | diffusers
        checkpoint="",                 # the file to import (--config.pretrained.checkpoint=FILE)
        source=source,                 # where it is published
        reference_config=reference_config,
        parameters=parameters,         # the reference code's parameter count (tested)
    ))
    config.sampling.num_samples = 16
    config.sampling.batch_size = 16
    return config


def score_sde_ncsnpp(name: str, *, image_size: int, sigma_max: float, N: int, nf: int = 128,
                     ch_mult=(1, 2, 2, 2), num_res_blocks: int = 4, dropout: float = 0.1,
                     progressive: str = "none", progressive_input: str = "residual", parameters: int = 0):
    """score_sde_pytorch's VE NCSN++ (models/ncsnpp.py with embedding 'fourier', FIR, BigGAN
    blocks), trained on [0, 1] data with sigma in [0.01, sigma_max] (that is [0.02, 2 sigma_max]
    on scoresde's [-1, 1]); the network outputs score * sigma (scale_by_sigma)."""
    reference = "ffhq_ncsnpp_continuous" if name.startswith("ffhq_1024") else name     # its file name there
    config = _base(image_size, "score_sde", f"score_sde_pytorch checkpoints: ve/{name}",
                   f"configs/ve/{reference}.py", parameters)
    config.sde.name = "vesde"
    config.sde.sigma_min = 2 * 0.01
    config.sde.sigma_max = 2 * float(sigma_max)
    config.sde.N = N
    m = config.model
    m.name = "ncsnpp"
    m.nf, m.ch_mult, m.num_res_blocks, m.dropout = nf, tuple(ch_mult), num_res_blocks, dropout
    m.attn_resolutions = (16,)
    m.embedding_type, m.fourier_scale, m.fourier_mult, m.fourier_product = "fourier", 16.0, 2, "l_W_2pi"
    m.resblock_type, m.skip_rescale, m.resample_skip_conv, m.up_attention = "biggan", True, True, "per_level"
    m.fir, m.fir_kernel = True, (1, 3, 3, 1)
    m.progressive, m.progressive_input, m.progressive_combine = progressive, progressive_input, "sum"
    m.prediction, m.label, m.data_range, m.center_input = "score_sigma", "log_sigma", (0.0, 1.0), True
    config.sampling.options.pc = dict(predictor="reverse_diffusion", corrector="langevin", snr=0.16,
                                      corrector_steps=1)
    return config


def score_sde_ddpmpp(name: str, sde: str, *, num_res_blocks: int, parameters: int):
    """score_sde_pytorch's DDPM++ (models/ncsnpp.py with embedding 'positional', no FIR, BigGAN
    blocks) on CIFAR-10, continuous VP / sub-VP, fed 999 t, predicting the noise."""
    config = _base(32, "score_sde", f"score_sde_pytorch checkpoints: {sde}/{name}", f"configs/{sde}/{name}.py",
                   parameters)
    config.sde.name = {"vp": "vpsde", "subvp": "subvpsde"}[sde]
    m = config.model
    m.name = "ncsnpp"
    m.nf, m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.dropout = 128, (1, 2, 2, 2), num_res_blocks, (16,), 0.1
    m.embedding_type, m.positional_scale = "positional", 1.0
    m.resblock_type, m.skip_rescale, m.resample_skip_conv, m.up_attention = "biggan", True, True, "per_level"
    m.fir, m.progressive, m.progressive_input = False, "none", "none"
    m.prediction, m.label, m.data_range = "eps", "t999", (-1.0, 1.0)
    config.sampling.sampler = "euler_maruyama"
    return config


def score_sde_ddpm(name: str, sde: str, *, parameters: int):
    """score_sde_pytorch's DDPM (models/ddpm.py) on CIFAR-10, continuous VP / sub-VP, fed 999 t."""
    config = _base(32, "score_sde", f"score_sde_pytorch checkpoints: {sde}/{name}",
                   f"configs/{sde}/{'ddpm/cifar10_continuous' if sde == 'vp' else name}.py", parameters)
    config.sde.name = {"vp": "vpsde", "subvp": "subvpsde"}[sde]
    m = config.model
    m.name = "ddpm"
    m.nf, m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.dropout = 128, (1, 2, 2, 2), 2, (16,), 0.1
    m.positional_scale = 1.0
    m.prediction, m.label, m.data_range = "eps", "t999", (-1.0, 1.0)
    config.sampling.sampler = "euler_maruyama"
    return config


def diffusers_ddpm(repo: str, *, image_size: int, ch_mult, dropout: float, parameters: int):
    """A diffusers UNet2DModel of google/ddpm-* (Ho et al. 2020's network, DDPM's 1000-step chain
    beta 1e-4..0.02 = VP beta 0.1..20), conditioned on the discrete step k, predicting the noise."""
    config = _base(image_size, "diffusers", f"https://huggingface.co/{repo}", repo, parameters)
    config.sde.name = "vpsde"
    config.sde.N = 1000
    m = config.model
    m.name = "diffusers_ddpm"
    m.nf, m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.dropout = 128, tuple(ch_mult), 2, (16,), dropout
    m.positional_scale, m.num_groups = 1.0, 32
    m.prediction, m.label, m.data_range = "eps", "discrete_step", (-1.0, 1.0)
    config.sampling.sampler = "euler_maruyama"
    return config
