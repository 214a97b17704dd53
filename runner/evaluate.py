"""`--mode eval`: test-split likelihood of the trained model beside two baselines.

What is computed (all on the test split, through the same pipeline):

* the model, by `eval.estimator`: "ode" (exact log-likelihood under the probability-flow
  ODE, Hutchinson or exact trace), "elbo" (the SDE evidence lower bound,
  `solvers.elbo`, i.e. an upper bound on bits/dim) or "both";
* `eval.repeats` draws per test example: a fresh uniform dequantisation of discrete data
  and fresh Hutchinson probes (or ELBO draws) each time. The reported standard error of
  the mean is split into the image-to-image part and the estimator's own noise
  (dequantisation + probes / Monte Carlo over t), from the within- and between-example
  variances: SE^2 = SE_images^2 + SE_estimator^2 with
  SE_estimator^2 = mean_i var_r(b_ir) / (R n) and SE_images^2 the rest;
* baselines: an independent per-pixel categorical over the data's levels and a
  full-covariance Gaussian fitted to the train split (`solvers.baselines`).

Randomness and processes: batches are `eval.batch_size` test examples in order; batch b of
repeat r draws its dequantisation noise and Hutchinson probes (or ELBO times) from its own
generator seeded by (eval.seed, r, b) (`batch_generators`). Under torchrun the batches are
dealt over the ranks as in `--mode sample` (`runner.common.batches`), the per-example rows are
gathered, and rank 0 computes the summaries and baselines and writes eval.json: the numbers are
the same whatever the process count. (Earlier versions ran one generator through all batches in
order, so today's draws differ from theirs; they have the same distribution.)

Bits/dim of discrete data are those of the discrete values on the data's own
`num_levels` (`solvers.bits_per_dim`); eval.json says which convention ("convention").
`eval.pixel_convention = "score_sde"` scores the images as 8-bit instead, as score_sde's
protocol does (`training.levels.to_8bit_bins`): the same points and offset as "levels" for
8-bit data, 256 bins (offset 7) around round(255 k / (L - 1)) for data on L < 256 levels.
"""
from __future__ import annotations

import json
import math
import os
import time

from .common import batches, gather, restored_score_fn, run_dir, setup
from .latent import is_latent, run_latent_eval
from solvers.baselines import gaussian_fit, gaussian_logp, gaussian_not_applicable, per_pixel_categorical
from training.data import dequantize, get_dataset, model_to_levels
from training.distributed import all_gather_objects
from training.levels import to_8bit_bins
import solvers
from configs.errors import InputError

ESTIMATORS = ("ode", "elbo", "both")


def batch_generators(seed, repeat, batch, device):
    """(CPU generator, generator on `device`) of batch `batch` of repeat `repeat`: the batch's
    dequantisation noise comes from the first, its Hutchinson probes / ELBO times from the second
    (the same generator on the CPU). Batches are `eval.batch_size` examples in a fixed order, so
    every example gets the same noise whichever process evaluates it and in whatever order."""
    import torch
    s = ((int(seed) * 1_000_003 + int(repeat)) * 1_000_003 + int(batch)) % (2 ** 63)
    gen = torch.Generator().manual_seed(s)
    if device.type == "cpu":
        return gen, gen
    return gen, torch.Generator(device=device).manual_seed((s + 1) % (2 ** 63))


def _summary(b):
    """b `[n, R]` bits/dim per example and repeat -> mean and its SE split into images and estimator."""
    n, R = b.shape
    mean_i = b.mean(1)
    total = (mean_i.var() / n).item() if n > 1 else float("nan")
    within = (b.var(1).mean() / (R * n)).item() if R > 1 else float("nan")
    images = max(total - within, 0.0) if R > 1 else float("nan")
    return {"bits_per_dim": mean_i.mean().item(), "stderr": math.sqrt(total) if n > 1 else float("nan"),
            "stderr_images": math.sqrt(images) if R > 1 and n > 1 else None,
            "stderr_estimator": math.sqrt(within) if R > 1 else None}


def run_eval(config, workdir, checkpoint=None):
    import torch
    from tqdm.auto import tqdm
    if is_latent(config):        # a latent run: the bound E_q[-log p(x|z) + log q(z|x) - log p(z)]
        return run_latent_eval(config, workdir, checkpoint)

    e = config.eval
    estimator = e.estimator
    if estimator not in ESTIMATORS:
        raise InputError(f"unknown eval.estimator {estimator!r}; expected one of {list(ESTIMATORS)}")
    dtype = {"float32": torch.float32, "float64": torch.float64}[e.dtype]
    repeats = e.repeats
    device, here = setup(config)
    sde, model, score_fn, step, ckpt = restored_score_fn(config, workdir, e.use_ema, checkpoint, device)
    model.to(dtype)
    eps = e.eps
    eps = sde.eps if eps is None else float(eps)
    ds = get_dataset(config)
    x0 = (ds.test if e.num_samples == 0 else ds.test[:e.num_samples]).to(dtype)
    n, D = x0.shape[0], x0[0].numel()
    L, train = ds.num_levels, ds.train
    pixels = e.pixel_convention
    if pixels == "score_sde":
        if L is None:
            raise InputError(f"config.eval.pixel_convention='score_sde' scores discrete images as 8-bit; "
                             f"data set {ds.name!r} is continuous (no levels): use 'levels'")
        x0, train, L = to_8bit_bins(x0, L), to_8bit_bins(train, L), 256

    def to_bpd(logp, xb):
        if L is not None:
            return solvers.bits_per_dim(logp, xb.shape, num_levels=L)
        return -logp / (D * math.log(2))     # continuous data: negative log-likelihood in bits/dim

    progress = config.training.progress and here.is_main
    runs = ["ode", "elbo"] if estimator == "both" else [estimator]
    nb = math.ceil(n / e.batch_size)
    bar = tqdm(total=repeats * nb * len(runs), desc="eval", unit="batch", disable=not progress, dynamic_ncols=True)
    res = {r: torch.empty(n, repeats, dtype=torch.float64) for r in runs}
    gauss = torch.empty(n, repeats, dtype=torch.float64)
    mu, cov = gaussian_fit(train, None if L is None else 2.0 / L)
    gauss_na = gaussian_not_applicable(train.shape[0], cov, L is not None)
    nfe = {r: 0 for r in runs}
    seconds = {r: 0.0 for r in runs}
    t0 = time.time()
    reuse = "ode" in runs and L is None and e.trace == "exact"      # deterministic: repeat 0 serves all
    try:
        for rep in range(repeats):
            for lo, hi, mine in batches(n, e.batch_size):
                cols = torch.zeros(len(mine), 1 + len(runs), dtype=torch.float64)   # gaussian, then runs
                if len(mine):
                    gen, dev_gen = batch_generators(e.seed, rep, mine.start // e.batch_size, device)
                    xb = x0[mine.start:mine.stop]
                    xb = dequantize(xb, gen, num_levels=L) if L is not None else xb
                    if gauss_na is None:
                        cols[:, 0] = to_bpd(gaussian_logp(xb, mu, cov), xb).double()
                    xb = xb.to(device)
                    for j, r in enumerate(runs, 1):
                        if r == "ode" and rep > 0 and reuse:
                            cols[:, j] = res["ode"][mine.start:mine.stop, 0]
                        elif r == "ode":
                            out = solvers.log_likelihood(sde, score_fn, xb, trace=e.trace,
                                                         probes=e.probes, method=e.method,
                                                         rtol=e.rtol, atol=e.atol, eps=eps, generator=dev_gen)
                            cols[:, j] = to_bpd(out.logp, xb).double().cpu()
                        else:
                            out = solvers.elbo(sde, score_fn, xb, n_t=e.elbo_n_t, trace=e.trace,
                                               eps=eps, generator=dev_gen, chunk=max(e.batch_size, 1))
                            cols[:, j] = to_bpd(out.elbo, xb).double().cpu()
                        if not (r == "ode" and rep > 0 and reuse):
                            nfe[r] += out.nfe
                            seconds[r] += out.seconds
                cols = gather(cols.to(device), lo, hi, e.batch_size).cpu()   # every rank's rows of this round
                gauss[lo:hi, rep] = cols[:, 0]
                for j, r in enumerate(runs, 1):
                    res[r][lo:hi, rep] = cols[:, j]
                bar.update(len(runs) * math.ceil((hi - lo) / e.batch_size))
    finally:
        bar.close()
    # batched score calls and solver time summed over ranks (the same count whatever the process count)
    totals = all_gather_objects((nfe, seconds))
    nfe = {r: sum(t[0][r] for t in totals) for r in runs}
    seconds = {r: sum(t[1][r] for t in totals) for r in runs}

    report = {}
    per_example = {"ode": nfe.get("ode", 0) / max(1, repeats * nb), "elbo": e.elbo_n_t}
    for r in runs:
        # nfe: batched score calls; nfe_per_example: score evaluations each example costs per repeat
        report[r] = {**_summary(res[r]), "nfe": nfe[r], "nfe_per_example": per_example[r],
                     "seconds": round(seconds[r], 3)}
    main = report[runs[0]]
    baselines, baselines_se = {}, {}
    if L is not None:
        pp = per_pixel_categorical(model_to_levels(train, L), model_to_levels(x0, L), L)
        baselines["per_pixel"] = pp.mean().item()
        baselines_se["per_pixel"] = (pp.std() / math.sqrt(n)).item() if n > 1 else float("nan")
    g = _summary(gauss) if gauss_na is None else {"bits_per_dim": None, "stderr": None}
    baselines["gaussian"], baselines_se["gaussian"] = g["bits_per_dim"], g["stderr"]
    convention = ({"num_levels": L, "data_range": "[-1,1]", "pixel_convention": pixels, "quantity":
                   f"bits/dim of the discrete data on {'its own' if pixels == 'levels' else 'score_sde 8-bit'} "
                   f"{L} levels: -log2 P(x)/D, bounded through "
                   f"uniform dequantisation; offset log2({L}/2) = {math.log2(L / 2):.4f}"} if L is not None else
                  {"num_levels": None, "quantity": "negative log-likelihood in bits/dim (continuous data)"})
    report = {"bits_per_dim": main["bits_per_dim"], "stderr": main["stderr"],
              "stderr_images": main["stderr_images"], "stderr_estimator": main["stderr_estimator"],
              "estimator": runs[0], **{r: report[r] for r in runs},
              "baselines": baselines, "baselines_stderr": baselines_se,
              "baselines_not_applicable": {} if gauss_na is None else {"gaussian": gauss_na},
              "convention": convention, "quantity": convention["quantity"], "num_examples": n, "repeats": repeats,
              "trace": e.trace, "probes": e.probes, "method": e.method, "rtol": e.rtol, "atol": e.atol,
              "eps": eps, "dtype": str(dtype).replace("torch.", ""),
              "elbo_n_t": e.elbo_n_t if "elbo" in runs else None,
              "nfe": sum(nfe.values()), "seconds": round(time.time() - t0, 3), "use_ema": e.use_ema,
              "checkpoint": ckpt, "step": step, "dataset": ds.name, "split": "test"}
    out = os.path.join(run_dir(workdir, "eval", step, f"{estimator}-{e.trace}"), "eval.json")
    if not here.is_main:
        return None
    report["device"], report["world_size"] = str(device), here.world_size
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    lines = [f"test bits/dim ({convention['quantity'].split(':')[0]}; n={n}, {repeats} repeat(s)):"]
    for r in runs:
        s = report[r]
        split = (f" [images {s['stderr_images']:.4f}, estimator {s['stderr_estimator']:.4f}]"
                 if s["stderr_estimator"] is not None else "")
        name = "ODE NLL" if r == "ode" else "ELBO bound"
        lines.append(f"  {name:<10} {s['bits_per_dim']:.4f} +- {s['stderr']:.4f}{split} "
                     f"({s['nfe_per_example']:.0f} score evaluations per example and repeat, {s['seconds']:.1f}s)")
    for k, v in baselines.items():
        lines.append(f"  {k:<10} {v:.4f} +- {baselines_se[k]:.4f} (baseline)" if v is not None else
                     f"  {k:<10} {report['baselines_not_applicable'][k]}")
    lines.append(f"  -> {out}")
    print("\n".join(lines))
    return report
