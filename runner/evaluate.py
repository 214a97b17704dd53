"""`--mode eval`: test-split bits/dim under the probability-flow ODE."""
from __future__ import annotations

import json
import math
import os
import time

from .common import restored_score_fn, run_dir, setup


def run_eval(config, workdir, checkpoint=None):
    import torch
    import solvers
    from training.data import dequantize, get_dataset

    e = config.eval
    device, here = setup(config)
    sde, model, score_fn, step, ckpt = restored_score_fn(config, workdir, e.use_ema, checkpoint, device)
    ds = get_dataset(config)
    x = ds.test if e.num_samples == 0 else ds.test[:e.num_samples]
    gen = torch.Generator().manual_seed(e.seed)
    if ds.eight_bit:
        x = dequantize(x, gen)
    # Hutchinson probes are drawn on the model's device (on the CPU: the same generator as before)
    probe_gen = gen if device.type == "cpu" else torch.Generator(device=device).manual_seed(e.seed + 1)
    t0 = time.time()
    bpd, nfe = [], 0
    for i in range(0, x.shape[0], e.batch_size):
        xb = x[i:i + e.batch_size].to(device)
        res = solvers.log_likelihood(sde, score_fn, xb, trace=e.trace, method=e.method, rtol=e.rtol, atol=e.atol,
                                     generator=probe_gen)
        nfe += res.nfe
        if ds.eight_bit:
            bpd.append(solvers.bits_per_dim(res.logp, xb.shape))
        else:   # continuous data: negative log-likelihood in bits per dimension, no quantisation term
            bpd.append(-res.logp / (xb[0].numel() * math.log(2)))
    bpd = torch.cat(bpd).double()
    n = bpd.numel()
    stderr = (bpd.std() / math.sqrt(n)).item() if n > 1 else float("nan")
    report = {"bits_per_dim": bpd.mean().item(), "stderr": stderr, "num_examples": n,
              "quantity": "bits/dim of 8-bit data (uniform dequantisation)" if ds.eight_bit
              else "negative log-likelihood in bits/dim (continuous data)",
              "trace": e.trace, "method": e.method, "rtol": e.rtol, "atol": e.atol, "nfe": nfe,
              "seconds": round(time.time() - t0, 3), "use_ema": e.use_ema, "checkpoint": ckpt, "step": step,
              "dataset": ds.name, "split": "test"}
    out = os.path.join(run_dir(workdir, "eval", step, e.trace), "eval.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"test bits/dim {report['bits_per_dim']:.4f} +- {stderr:.4f} (n={n}, {e.trace} trace, "
          f"{nfe} score evaluations, {report['seconds']:.1f}s): {out}")
    return report
