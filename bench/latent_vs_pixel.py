"""Benchmark: latent score models against the pixel model at equal training compute (`--data digits` or
`--data fashion_mnist`; settings in `bench/latent_study.py`, evaluation in `bench/latent_study_eval.py`).

Parts (resumable: each finished part is kept in the JSON and skipped on the next run):

1. `beta`: the KL autoencoder (f = 2, 2 channels) at several KL weights: test reconstruction -log p(x|z) and
   KL in bits/dim of x (one posterior draw per image), PSNR of the quantised decoded posterior means, the
   latent std and scale factor, each with its SE over test images.
2. `cost`: seconds per training step of the pixel model, the latent models and the autoencoders, measured
   side by side in alternation (`--rounds` short runs each, median), so the other jobs on this shared
   machine load every model alike. The arms' autoencoders (`--ae-steps`) are trained first if missing.
3. `train`: steps = budget / cost. A latent arm pays for its autoencoder: latent steps =
   (budget - autoencoder steps x autoencoder cost) / latent cost. Steps and costs are recorded.
4. `eval`: samples with one sampler at equal NFE (`--sampler`, `--sampler-steps`), `--seeds` sets of n:
   FD / KID / precision / recall in the data's feature-classifier space (`evaluation`), SE over seeds,
   beside the floor (train vs test) and a Gaussian fitted to train; test bits/dim on `--eval-n` images:
   the pixel model's ODE NLL and the latent models' bound with its three terms; the per-pixel baseline;
   the autoencoders' reconstruction FD and PSNR; a sample grid per arm.
5. `speed`: samples per second (decoding included) of the three arms in alternating rounds, as ratios.
6. `report` (<out>.md tables) and `plot` (<out>.png); `grids` (one PNG, rows test / pixel / f=2 / f=4).

    python bench/latent_vs_pixel.py --part all                          # digits -> bench/results/latent_vs_pixel.json
    python bench/latent_vs_pixel.py --data fashion_mnist --part all     # -> bench/results/latent_vs_pixel_fashion_mnist.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.latent_study import ARM_NAMES, RESULTS, STUDIES, part_beta, part_cost, part_train  # noqa: E402
from bench.latent_study_eval import part_eval, part_grids, part_speed  # noqa: E402

ROWS = ("floor", "gaussian", "pixel", "latent_f2", "latent_f4")


def fmt(v, digits=3):
    if v is None:
        return "n/a"
    if isinstance(v, (int, float)):
        return f"{v:.{digits}f}"
    return f"{v['mean']:.{digits}f}" + ("" if v["stderr"] is None else f" ± {v['stderr']:.{digits}f}")


def part_report(a, res):
    """Markdown tables of the JSON (<out>.md), pasted into docs/bench/latent-vs-pixel.md."""
    lines = ["| beta | -log p(x\\|z) bits/dim | KL bits/dim | PSNR dB | latent std | scale |", "|---|---|---|---|---|---|"] \
        if res.get("beta") else []
    for k, r in res.get("beta", {}).items():
        lines.append(f"| {r['beta']:g} | {fmt(r['rec_bpd'])} | {fmt(r['kl_bpd'])} | {fmt(r['psnr_db'], 2)} | "
                     f"{r['latent_std']:.3f} | {r['scale']:.3f} |")
    cost = res.get("cost", {})
    c, ratio = cost.get("seconds_per_step", {}), cost.get("ratio_to_pixel", {})
    lines += ["", "| model | s/step | cost / pixel cost | steps | autoencoder s | compute s | wall s |",
              "|---|---|---|---|---|---|---|"]
    for arm, r in res.get("train", {}).items():
        if isinstance(r, dict) and "steps" in r:
            lines.append(f"| {arm} | {r['seconds_per_step']:.4f} | {fmt(ratio.get(arm))} | {r['steps']} | "
                         f"{r['autoencoder_seconds']:.0f} | {r['compute_seconds']:.0f} | {r['wall_seconds']:.0f} |")
    for k in c:
        if k.startswith("ae_"):
            lines.append(f"\nautoencoder {k[3:]}: {c[k]:.4f} s/step ({fmt(ratio.get(k))} of the pixel model's)")
    e = res.get("eval", {})
    lines += ["", "| model | FD | KID | precision | recall | samples/s | bits/dim | per-pixel baseline |",
              "|---|---|---|---|---|---|---|---|"]
    for arm in ROWS:
        if arm not in e:
            continue
        r = e[arm]
        b = r.get("bits_per_dim", {})
        bpd = f"{b['bits_per_dim']:.3f} ± {b['stderr']:.3f}" if b else "—"
        pp = f"{b['baselines']['per_pixel']:.3f} ± {b['baselines_stderr']['per_pixel']:.3f}" if b else "—"
        sps = fmt(r["samples_per_second"], 1) if "samples_per_second" in r else "—"
        lines.append(f"| {arm} | {fmt(r['fd'])} | {fmt(r['kid'], 4)} | {fmt(r['precision'])} | {fmt(r['recall'])} | "
                     f"{sps} | {bpd} | {pp} |")
    sp = res.get("speed", {})
    if sp:
        lines += ["", "| model | s/sample (median) | speed-up over pixel |", "|---|---|---|"]
        for arm, v in sp["seconds_per_sample"].items():
            lines.append(f"| {arm} | {v:.4f} | {fmt(sp['speedup_over_pixel'][arm], 2)} |")
    lines += ["", "| model | -log p(x\\|z) | log q(z\\|x) | -log p(z) | bound | scale | rFD | test-subset FD | PSNR dB |",
              "|---|---|---|---|---|---|---|---|---|"]
    for arm in ("latent_f2", "latent_f4"):
        if arm in e:
            b, ae = e[arm]["bits_per_dim"], e[arm]["autoencoder"]
            t = b["terms"]
            lines.append(f"| {arm} | " + " | ".join(f"{t[k]['bits_per_dim']:.3f} ± {t[k]['stderr']:.3f}"
                                                    for k in ("rec", "log_q", "neg_log_pz"))
                         + f" | {b['bits_per_dim']:.3f} ± {b['stderr']:.3f} | {b['scale']:.3f} | "
                           f"{fmt(ae.get('reconstruction_fd'))} | {fmt(ae.get('test_subset_fd'))} | {fmt(ae['psnr_db'], 2)} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.splitext(a.out)[0] + ".md", "w") as f:
        f.write(text)
    print(text)


def part_plot(a, res):
    """<out>.png: (left) each arm's training compute split into autoencoder and score-model seconds; (middle) FD
    with SE bars beside the floor and Gaussian rows; (right) test bits/dim: the pixel NLL and the latent bounds
    stacked by their three terms, the per-pixel baseline dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    e, t = res.get("eval", {}), res.get("train", {})
    arms = [arm for arm in ARM_NAMES if arm in e]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, arm in enumerate(arms):
        ae = t[arm]["autoencoder_seconds"]
        ax[0].bar(i, ae, color="tab:gray", label="autoencoder" if i == 1 else None)
        ax[0].bar(i, t[arm]["compute_seconds"] - ae, bottom=ae, color="tab:blue",
                  label="score model" if i == 0 else None)
        ax[0].text(i, t[arm]["compute_seconds"], f"{t[arm]['steps']} steps", ha="center", va="bottom", fontsize=8)
    ax[0].set(xticks=range(len(arms)), xticklabels=arms, ylabel="training compute (s, measured cost x steps)",
              title=f"equal budget {t.get('budget_seconds', 0):.0f} s")
    ax[0].legend(fontsize=8, loc="lower right")
    rows = [r for r in ROWS if r in e]
    ax[1].errorbar(range(len(rows)), [e[r]["fd"]["mean"] for r in rows], yerr=[e[r]["fd"]["stderr"] for r in rows],
                   fmt="o", capsize=4)
    ax[1].set(xticks=range(len(rows)), xticklabels=rows, ylabel="FD (features of the data's classifier)",
              title=f"{e.get('sampler')} {e.get('steps')} steps, {e.get('num_samples')} samples x {e.get('seeds')} seeds")
    ax[1].tick_params(axis="x", labelrotation=20)
    base = None
    for i, arm in enumerate(arms):
        b = e[arm]["bits_per_dim"]
        base = b["baselines"]["per_pixel"]
        if "terms" in b:
            bottom = 0.0
            for k, col in (("rec", "tab:orange"), ("log_q", "tab:green"), ("neg_log_pz", "tab:purple")):
                v = b["terms"][k]["bits_per_dim"]
                ax[2].bar(i, v, bottom=bottom, color=col, label={"rec": "-log p(x|z)", "log_q": "log q(z|x)",
                                                                 "neg_log_pz": "-log p(z)"}[k] if i == 1 else None)
                bottom += v
        else:
            ax[2].bar(i, b["bits_per_dim"], color="tab:blue", label="ODE NLL")
        ax[2].errorbar(i, b["bits_per_dim"], yerr=b["stderr"], fmt="k_", capsize=5)
    if base is not None:
        ax[2].axhline(base, ls="--", color="k", lw=1, label="per-pixel histogram")
    top = max([e[arm]["bits_per_dim"]["bits_per_dim"] for arm in arms] + [base or 0])
    ax[2].set(xticks=range(len(arms)), xticklabels=arms, ylabel="test bits/dim (pixel: NLL, latent: bound)",
              ylim=(0, 1.5 * top))
    ax[2].legend(fontsize=7, loc="upper center", ncol=2)
    fig.suptitle(f"latent vs pixel at equal training compute: {a.study.data}")
    fig.tight_layout()
    path = os.path.splitext(a.out)[0] + ".png"
    fig.savefig(path, dpi=100)
    print(path)


PARTS = (("beta", part_beta), ("cost", part_cost), ("train", part_train), ("eval", part_eval),
         ("speed", part_speed), ("report", part_report), ("plot", part_plot), ("grids", part_grids))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="digits", choices=tuple(STUDIES))
    p.add_argument("--part", default="all", help="all (every part but beta and grids for fashion_mnist) or a "
                   "comma-separated list of " + ", ".join(n for n, _ in PARTS))
    p.add_argument("--workdir", default=None, help="runs/<out> by default")
    p.add_argument("--out", default=None, help="bench/results/<out>.json by default")
    p.add_argument("--betas", type=lambda s: [float(v) for v in s.split(",")], default=[1e-4, 1e-3, 1e-2])
    p.add_argument("--beta", type=float, default=None, help="KL weight of the latent arms' autoencoders")
    p.add_argument("--ae-steps", type=int, default=None)
    p.add_argument("--budget", type=float, default=None, help="training compute seconds per arm")
    p.add_argument("--cost-steps", type=int, default=None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--sampler-steps", type=int, default=20)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--eval-n", type=int, default=None)
    p.add_argument("--speed-batch", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    a.study = S = STUDIES[a.data]
    for k, v in S.defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.workdir = a.workdir or os.path.join("runs", S.out)
    a.out = a.out or os.path.join(RESULTS, S.out + ".json")
    names = [n for n, _ in PARTS]
    want = [n for n in names if n not in ("beta", "grids") or a.data == "digits"] if a.part == "all" else a.part.split(",")
    bad = [w for w in want if w not in names]
    if bad:
        p.error(f"--part {a.part!r}: unknown part(s) {bad}; expected all or some of {', '.join(names)}")
    import torch
    torch.set_num_threads(a.threads)
    res = json.load(open(a.out)) if os.path.exists(a.out) else {}
    res["data"] = S.note
    command = "python bench/latent_vs_pixel.py " + " ".join(argv if argv is not None else sys.argv[1:])
    res["commands"] = res.get("commands", []) + [command]

    def save(r):
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(r, f, indent=2)
        os.replace(tmp, a.out)
    a.save = save
    for name, fn in PARTS:
        if name in want:
            fn(a, res)
    save(res)


if __name__ == "__main__":
    main()
