"""Default config: the embedded demo (`python run.py`).

A 0.7M-parameter DDPM++ U-Net (channels 32, multipliers (1, 2), one residual block per
level, attention at 4x4) trained with the continuous VP loss on sklearn's 8x8 digits,
batch 64, 1,700 steps. The whole demo (train, sample, eval) took 295 s on 2 quiet CPU
cores, install not included (117 s on a faster day; docs/bench/demo.md). Every experiment file starts
from `get_default_config()` and changes what differs. Any field can be overridden on
the command line: `python run.py --config configs/x.py --config.training.n_iters=2000`.
"""
import ml_collections
from ml_collections import config_dict


def get_default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.device = "auto"       # auto (cuda, else mps, else cpu) | cpu | cuda | cuda:N | mps
    # Modules run.py imports before it checks the config, e.g. ("my_samplers",): their
    # register_sampler / register_model calls make those names usable from the command line.
    # Found on sys.path (the current directory included); saved with the workdir's config.
    config.plugins = ()

    config.data = data = ml_collections.ConfigDict()
    data.dataset = "digits"      # any name of training.data.DATASETS: moons | 8gaussians | checkerboard
    #                              | swissroll | mixture | digits | fashion_mnist | sample_patches | folder | array
    data.image_size = 8          # images: square size and channels (must match the data)
    data.num_channels = 1
    data.dim = 2                 # vector data: dimension
    data.path = ""               # fashion_mnist (idx folder), folder (PNG/JPEG), array (.npy/.npz)
    data.key = ""                # array key inside an .npz (default "x" or the first)
    data.split_seed = 0          # train/test split (and toy data generation) seed
    data.test_fraction = 0.2     # digits, folder, array
    data.num_levels = 0          # discrete levels per value: 0 = the data's own (digits 17, uint8 256);
    #                              digits 256 = mapped to 8-bit (image papers' convention); folders and
    #                              uint8 arrays: L equally spaced 8-bit levels round(k 255 / (L - 1))
    data.num_train = 20000       # toy sets and mixtures
    data.num_test = 5000
    data.noise = config_dict.placeholder(float)   # toy-set noise (None: the set's default)
    # Latent runs (docs/guide/latent.md): an autoencoder run directory (--mode train_autoencoder); the
    # score model then trains on its scaled latents and image_size / num_channels are the latent shape.
    data.autoencoder = ""
    data.mixture = ml_collections.ConfigDict(dict(
        weights=(0.5, 0.5), means=((-2.0, 0.0), (2.0, 0.0)), stds=(0.5, 0.5)))

    config.sde = sde = ml_collections.ConfigDict()
    sde.name = "vpsde"           # vpsde | subvpsde | vesde
    sde.beta_min = 0.1
    sde.beta_max = 20.0
    sde.schedule = "linear"      # VP: linear | cosine
    sde.sigma_min = 0.01
    sde.sigma_max = 50.0
    sde.N = 1000
    sde.eps = config_dict.placeholder(float)      # None: 1e-3 (VP, sub-VP), 1e-5 (VE)

    config.model = model = ml_collections.ConfigDict()
    model.name = "ddpmpp"        # ddpmpp | ncsnpp | ddpm | diffusers_ddpm | mlp
    model.nf = 32
    model.ch_mult = (1, 2)
    model.num_res_blocks = 1
    model.attn_resolutions = (4,)
    model.dropout = 0.0
    model.num_groups = 32
    model.resamp_with_conv = True
    model.embedding_type = config_dict.placeholder(str)   # fourier | positional (None: family default)
    model.resblock_type = config_dict.placeholder(str)    # biggan | ddpm (None: family default)
    model.skip_rescale = config_dict.placeholder(bool)
    model.fourier_scale = 16.0
    model.positional_scale = 1000.0
    # U-Net options of the published networks (models/unet.py; None: the family's default, off for
    # ncsnpp/ddpmpp): see configs/pretrained/ and docs/guide/published-models.md
    model.up_attention = config_dict.placeholder(str)        # per_block | per_level
    model.resample_skip_conv = config_dict.placeholder(bool)  # 1x1 skip conv in BigGAN resampling blocks
    model.fourier_mult = config_dict.placeholder(int)        # Fourier embedding width fourier_mult * nf
    model.fourier_product = config_dict.placeholder(str)     # 2pi_l_W | l_W_2pi (float32 order of the phase)
    model.fir = config_dict.placeholder(bool)                # FIR resampling (fir_kernel)
    model.fir_kernel = (1, 3, 3, 1)
    model.progressive = config_dict.placeholder(str)         # none | output_skip | residual
    model.progressive_input = config_dict.placeholder(str)   # none | input_skip | residual
    model.progressive_combine = config_dict.placeholder(str)  # sum | cat
    model.downsample_padding = config_dict.placeholder(str)  # symmetric | right_bottom
    model.exact_groups = config_dict.placeholder(bool)       # exactly num_groups GroupNorm groups
    model.center_input = config_dict.placeholder(bool)       # the net maps its [0, 1] input to 2u - 1 itself
    model.hidden = 128           # mlp
    model.num_blocks = 3         # mlp
    model.embed_dim = 64         # mlp
    model.num_classes = 0        # > 0: class-conditional (label embedding added to the noise embedding)
    # prompts (docs/guide/prompts.md): text_vocab_size > 0 gives the U-Net a text encoder and cross-attention
    # at cross_attn_resolutions; the vocabulary (built from config.prompts) must fit in text_vocab_size
    model.text_vocab_size = 0
    model.cross_attn_resolutions = ()
    model.text = ml_collections.ConfigDict(dict(dim=64, depth=2, heads=4, max_len=16, cross_attn_heads=1))
    # The network -> score parameterisation (models/parameterization.py). "auto": the SDE's own
    # (VP, sub-VP: eps with label t; VE: score_sigma with label log_sigma).
    model.prediction = "auto"    # auto | eps | x0 | v | score_sigma (output / s) | score
    model.label = "auto"         # auto | t | t999 (999 t) | log_sigma | sigma | discrete_step (DDPM's k)
    model.data_range = (-1.0, 1.0)   # (-1, 1) | (0, 1): the data units the network sees (score_sde VE: 0, 1)

    config.training = training = ml_collections.ConfigDict()
    training.n_iters = 1700
    training.batch_size = 64
    training.lr = 2e-3
    training.warmup = 100
    training.grad_clip = 1.0
    training.beta1 = 0.9
    training.adam_eps = 1e-8
    training.weight_decay = 0.0
    training.ema_decay = 0.999
    training.ema_warmup = True
    training.continuous = True
    training.reduce_mean = False
    training.likelihood_weighting = False
    training.importance_sampling = False   # with likelihood_weighting: t ~ g^2/s^2, loss reweighted
    training.dequantize = True   # discrete data: train on uniformly dequantised values (as eval scores them)
    training.snapshot_freq = 500
    training.keep = 3
    training.log_freq = 50
    # torch.set_num_threads in run.py. -1 (auto): the CPUs idle when the run starts, measured over
    # 0.2 s (/proc/stat), at least 1: all cores on a quiet machine, fewer beside busy processes, where
    # spinning OpenMP threads collapse (docs/bench/demo.md). 0: torch's default; N: N threads.
    training.num_threads = -1
    training.progress = True
    training.label_dropout = 0.0  # class-conditional nets: P(label -> null label), for classifier-free guidance
    # device, precision, monitoring: see training/device.py, training/monitor.py
    training.precision = "fp32"  # fp32 | bf16 | fp16 (autocast on the network; GradScaler for fp16)
    training.channels_last = False
    training.compile = False     # torch.compile the network
    training.eval_freq = 0       # held-out DSM loss of the EMA model every N steps (0: off)
    training.eval_num_samples = 512
    training.sample_freq = 0     # sample grid of the EMA model every N steps (0: off)
    training.sample_num = 64

    # `--mode train_autoencoder` (models/autoencoder.py): a KL autoencoder of config.data, trained with
    # config.training's loop settings; loss -log p(x|z) (discretised Gaussian on the data's levels)
    # + beta * KL(q(z|x) || N(0, I)), both per dimension of x.
    config.autoencoder = autoencoder = ml_collections.ConfigDict()
    autoencoder.f = 2            # downsampling factor: 1 (no compression, the control) | 2 | 4
    autoencoder.latent_channels = 4
    autoencoder.nf = 32
    # KL weight. Digits, f = 2, 800 steps (bench/latent_vs_pixel.py --part beta): beta 1e-4 / 1e-3 / 1e-2 / 0.1
    # give test -log p(x|z) 0.888 / 0.887 / 0.892 / 0.947 and KL 3.92 / 3.83 / 3.14 / 1.99 bits/dim (SE <= 0.013):
    # 0.1 halves the KL for 7% more reconstruction loss (docs/bench/latent-vs-pixel.md).
    autoencoder.beta = 0.1

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.sampler = "pc"      # any name of solvers.SAMPLERS
    sampling.steps = 500
    sampling.num_samples = 64
    sampling.denoise = True
    sampling.seed = 1
    sampling.use_ema = True
    # class-conditional sampling and guidance (see runner/guided.py)
    sampling.class_label = "none"     # none | an int, e.g. "3" | all (one row per class)
    sampling.samples_per_class = 8    # with class_label=all
    sampling.guidance = "none"        # none | classifier | cfg | universal
    sampling.guidance_scale = 1.0     # classifier/universal: scale; cfg: w
    sampling.classifier_workdir = ""  # where train_classifier wrote the classifier ("" = this workdir)
    sampling.prompt = ""              # prompt-conditional nets: e.g. "a thick seven leaning right" ("": empty)
    sampling.batch_size = 1024   # samples per batch, written to disk batch by batch
    # Keyword options per sampler name (see solvers.sample); only the block of the chosen
    # sampler is used, e.g. --config.sampling.sampler=ode --config.sampling.options.ode.rtol=1e-3.
    sampling.options = ml_collections.ConfigDict(dict(
        pc=dict(predictor="reverse_diffusion", corrector="langevin", snr=0.16, corrector_steps=1),
        annealed_langevin=dict(corrector_steps=1),   # step_size: the solver default
        ode=dict(method="rk45", rtol=1e-5, atol=1e-5),
        sde=dict(method="euler"),
    ))

    # `--mode compare`: a sampler study (runner/compare.py). Every sampler of `samplers`
    # ("all": every registered sampler) at every NFE budget of the shared ladder `nfe`
    # (adaptive samplers at `tolerances`) for every seed, num_samples samples per cell (capped
    # by the test split), scored against the test split in the feature space of a classifier
    # trained on the data (evaluation/), with reference rows: train vs test (the floor), a
    # Gaussian fitted to the train split, and the exact score for `mixture` data. Resumable.
    config.compare = compare = ml_collections.ConfigDict()
    compare.samplers = "all"                    # "all" or a tuple of names of solvers.SAMPLERS
    compare.nfe = (5, 10, 20, 50, 100, 200, 500, 1000)   # NFE budgets (final denoising step included)
    compare.tolerances = (1e-2, 1e-3, 1e-5)     # adaptive samplers (ode rk45): rtol = atol
    compare.seeds = (0, 1, 2)                   # independent sample sets per cell (>= 2; SE over them)
    compare.num_samples = 1000                  # samples per cell and reference-set size (capped by the test split)
    compare.quick = False                       # True: nfe (5, 10, 20), tolerance 1e-2, 200 samples
    compare.primary_metric = ""                 # "": fd for images, sliced_w1 for vectors
    compare.feature_cache = ""                  # feature classifiers ("": ~/.cache/scoresde/feature_nets)
    compare.feature_epochs = 30                 # feature classifier training epochs (part of its cache key)
    compare.inception = False                   # also Inception FID/KID (pip install -e ".[fid]"; RGB >= 32x32)
    compare.seed = 3                            # KID subsets and sliced-W1 directions
    compare.progress = True
    compare.use_ema = True

    # Classifiers: `--mode train_classifier` trains this one into workdir/<dir>/.
    # noise_conditional=True: p(y | x_t, t) for classifier guidance; False: a clean-data classifier
    # (the independent judge of samples; train it with another seed and dir).
    config.classifier = classifier = ml_collections.ConfigDict()
    classifier.name = "encoder"  # encoder (images: U-Net down path + pooling) | mlp (vectors)
    classifier.num_classes = 10
    classifier.noise_conditional = True
    classifier.dir = "classifier"
    classifier.nf = 32
    classifier.ch_mult = (1, 2)
    classifier.num_res_blocks = 1
    classifier.dropout = 0.1
    classifier.num_groups = 32
    classifier.hidden = 128      # mlp
    classifier.num_blocks = 3    # mlp
    classifier.n_iters = 2000
    classifier.batch_size = 128
    classifier.lr = 1e-3
    classifier.weight_decay = 0.0
    classifier.seed = 10
    classifier.eval_times = (0.0, 0.1, 0.25, 0.5, 0.75)

    # Prompts from computed image attributes (training/prompts.py): the class name and binned
    # attributes (thickness, slant, size, brightness) filled into templates; held_out "class:bin"
    # combinations leave prompt-conditional (and contrastive) training.
    config.prompts = prompts = ml_collections.ConfigDict()
    prompts.attributes = ("thickness", "slant")
    prompts.templates = ("a {thickness} {class} {slant}", "{thickness} {class} {slant}",
                         "a {class} that is {thickness} and {slant}", "{class} {slant} and {thickness}", "a {class}")
    prompts.held_out = ()

    # `--mode train_contrastive`: the noise-conditional image-text model of CLIP-style guidance
    # (models/contrastive.py), written to workdir/<contrastive.dir>/
    config.contrastive = contrastive = ml_collections.ConfigDict()
    contrastive.dir = "contrastive"
    contrastive.image_encoder = "encoder"   # encoder (images) | mlp (vectors)
    contrastive.embed_dim = 64
    contrastive.nf = 32
    contrastive.ch_mult = (1, 2)
    contrastive.num_res_blocks = 1
    contrastive.dropout = 0.0
    contrastive.hidden = 128     # mlp
    contrastive.num_blocks = 3   # mlp
    contrastive.text_dim = 64
    contrastive.text_depth = 2
    contrastive.text_heads = 4
    contrastive.n_iters = 2000
    contrastive.batch_size = 128
    contrastive.lr = 1e-3
    contrastive.seed = 30

    # `--mode inpaint` / `--mode colorize` on test images (runner/inpaint.py)
    config.inpaint = inpaint = ml_collections.ConfigDict()
    inpaint.mask = "right_half"  # left_half | right_half | top_half | bottom_half | box | random
    inpaint.box = (0.25, 0.25, 0.75, 0.75)   # unknown box (row0, col0, row1, col1), fractions
    inpaint.random_fraction = 0.5            # random: share of observed pixels
    inpaint.num_images = 10
    inpaint.sampler = "pc"       # any name of solvers.SAMPLERS (options: config.sampling.options.<name>)
    inpaint.steps = 500
    inpaint.corrector = "langevin"   # pc only: corrector, snr, corrector_steps
    inpaint.snr = 0.16
    inpaint.corrector_steps = 1
    inpaint.recurrence = 1       # > 1: RePaint resampling (samplers that step on a fixed grid, one step at a time)
    inpaint.seed = 4
    inpaint.use_ema = True

    # Cold diffusion (docs/guide/cold-diffusion.md). degradation "" trains the score model
    # above; a registered degradation name (sde_lib.DEGRADATIONS) trains a restoration network
    # R(D(x0, t), t) ~ x0 instead, with the same U-Net (label t), loop, EMA and checkpoints, and
    # --mode sample then needs sampling.sampler = "cold" (Algorithm cold.algorithm from a prior draw).
    config.cold = cold = ml_collections.ConfigDict()
    cold.degradation = ""        # "" (hot: score model) | blur | mask | pixelate | snow | gaussian
    cold.loss = "l1"             # l1 (the paper) | l2: || R(D(x0, t), t) - x0 ||, mean over pixels and batch
    cold.algorithm = "improved"  # improved (Algorithm 2) | naive (Algorithm 1)
    cold.steps = 50              # sampling: uniform grid T -> 0 of this many steps (one R call each)
    cold.prior = "auto"          # x_T: gmm (mixture fitted to D(train, T)) | fixed (D(x0, T) when it forgets
    #                              x0, e.g. a full mask) | auto (fixed if D(x0, T) is the same for all data)
    cold.prior_components = 10   # gmm components
    cold.prior_noise = 0.002     # std of the noise added to x_T (the paper's 0.001-0.004)
    # options of each degradation (only the chosen one's block is used; see sde_lib/degradations.py)
    cold.options = ml_collections.ConfigDict(dict(
        blur=dict(sigma_max=6.0, power=1.0),
        mask=dict(order="centre", fraction_max=1.0, fill=0.0, seed=0),
        pixelate=dict(resolutions=()),      # (): halving down to 1 pixel
        snow=dict(amount=1.0, density=0.25, white=1.0, seed=0),
        gaussian=dict(),
    ))

    config.eval = evaluate = ml_collections.ConfigDict()
    evaluate.num_samples = 0     # test examples to evaluate (0: the whole test split)
    evaluate.batch_size = 500
    evaluate.trace = "hutchinson"  # exact | hutchinson
    evaluate.method = "rk45"     # dopri5 with Dormand-Prince's error estimate (solvers/ode.py)
    # 1e-3: on the demo model (100 test digits, one dequantisation and probe) the solver's share of
    # bits/dim is 6.7e-4 mean |error| (worst 2.6e-3) against a 1e-6 solve, at 86 score evaluations
    # per example; dopri5 at the former 1e-4 had 8.8e-4 at 110; both far below the eval's standard
    # error (~0.011). python bench/eval_tolerance.py --workdir runs/demo
    evaluate.rtol = 1e-3
    evaluate.atol = 1e-3
    evaluate.seed = 2
    evaluate.use_ema = True
    evaluate.estimator = "both"  # ode (probability-flow ODE NLL) | elbo (SDE bound, Monte Carlo over t) | both
    evaluate.repeats = 3         # dequantisation draws (with fresh probes / ELBO draws) per test example
    evaluate.probes = 1          # Hutchinson probes per ODE evaluation
    evaluate.elbo_n_t = 32       # ELBO draws of t per example and repeat
    evaluate.dtype = "float32"   # float32 | float64 (model and data)
    # Likelihood start time. None: sde.eps, the smallest time the score was trained at (1e-3 for VP
    # and sub-VP, 1e-5 for VE); below it the network extrapolates. For likelihood-oriented models
    # train with --config.sde.eps=1e-5 (as the reference implementation's likelihood runs) and
    # evaluate at the same eps.
    evaluate.eps = config_dict.placeholder(float)
    # Pixel grid of bits/dim for discrete data. levels: the data's own L levels (bins around the
    # stored bin centres, offset log2(L/2)). score_sde: every image read as 8-bit, v = round(255 k/(L-1)),
    # dequantised on 256 bins, offset 7 (score_sde's datasets.py + likelihood.py). Identical for 8-bit
    # data; see docs/guide/published-models.md ("Pixel conventions").
    evaluate.pixel_convention = "levels"   # levels | score_sde
    return config


def get_config() -> ml_collections.ConfigDict:
    return get_default_config()
