"""VE SDE on 8x8 digits with an NCSN++ U-Net (Gaussian Fourier embedding of log sigma,
BigGAN-style resampling blocks, output scaled by 1/sigma).

sigma_max = 20: the largest pairwise distance between [-1, 1]-scaled 8x8 images is
about 16 (Song & Ermon 2020's rule of thumb), so 20 covers the data at T."""
from configs.default import get_default_config


def get_config():
    config = get_default_config()
    config.sde.name = "vesde"
    config.sde.sigma_min = 0.01
    config.sde.sigma_max = 20.0
    config.model.name = "ncsnpp"
    config.training.n_iters = 5000
    config.sampling.options.pc = dict(predictor="reverse_diffusion", corrector="langevin", snr=0.16,
                                      corrector_steps=1)
    return config
