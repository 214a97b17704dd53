"""The study's aggregation and resolution arithmetic on hand-made rows."""
import math

import pytest

from runner.compare_report import aggregate, markdown, resolution


def _row(score, sampler, label, seed, fd, **kw):
    return {"score": score, "sampler": sampler, "label": label, "seed": seed, "finite": True, "fd": fd,
            "nfe": kw.pop("nfe", 0), "seconds": 0.1, **kw}


def test_aggregate_mean_se_and_resolution():
    rows = [_row("reference", "floor", "floor", s, v) for s, v in enumerate((1.0, 1.2, 1.4))]
    rows += [_row("reference", "gaussian", "gaussian", s, v) for s, v in enumerate((5.0, 5.5, 6.0))]
    rows += [_row("model", "a", "nfe=5", s, v, nfe_budget=5, nfe=5) for s, v in enumerate((2.0, 2.1, 2.2))]
    rows += [_row("model", "b", "nfe=5", s, v, nfe_budget=5, nfe=5) for s, v in enumerate((2.05, 2.15, 2.25))]
    rows += [{**_row("model", "b", "nfe=10", 0, 0.0, nfe_budget=10, nfe=10), "finite": False}]
    aggs = {(a["sampler"], a["label"]): a for a in aggregate(rows)}
    floor = aggs[("floor", "floor")]
    assert floor["fd"] == pytest.approx(1.2) and floor["fd_se"] == pytest.approx(0.2 / math.sqrt(3))
    assert aggs[("b", "nfe=10")]["non_finite"] == 1 and "fd" not in aggs[("b", "nfe=10")]
    res = resolution(list(aggs.values()), "fd")
    assert res["best"]["sampler"] == "a"
    se_a, se_g = 0.1 / math.sqrt(3), 0.5 / math.sqrt(3)
    assert res["gaussian_minus_best_in_se"] == pytest.approx((5.5 - 2.1) / math.hypot(se_a, se_g))
    assert res["gaussian_minus_floor_in_se"] == pytest.approx((5.5 - 1.2) / math.hypot(0.2 / math.sqrt(3), se_g))
    assert res["pairs_at_low_nfe"] == {"5": {"pairs": 1, "separated_by_2se": 0}}     # 0.05 apart, SE 0.08
    meta = {"primary_metric": "fd", "features": {"kind": "classifier"}, "dataset": "x", "num_samples": 3,
            "seeds": [0, 1, 2], "reference": "r", "step": 1, "use_ema": True, "denoise": True}
    md = markdown(list(aggs.values()), meta)
    assert "| model | a | **2.100 ± 0.058** |" in md and "(1 non-finite)" in md


def test_plot_gives_every_sampler_its_own_colour(tmp_path, monkeypatch):
    """With more than 10 samplers (the registry has 16) the default colour cycle repeats; every
    sampler's curve must still have a colour no other sampler's curve has."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from runner import compare_report
    names = [f"s{i}" for i in range(16)]
    rows = [_row("model", name, f"nfe={b}", s, 1.0 + i + s * 0.1, nfe_budget=b, nfe=b)
            for i, name in enumerate(names) for b in (5, 10) for s in range(2)]
    seen = {}
    monkeypatch.setattr(plt, "close", lambda fig: seen.setdefault("fig", fig))
    meta = {"dataset": "x", "num_samples": 3, "seeds": [0, 1]}
    compare_report.plot(compare_report.aggregate(rows), meta, str(tmp_path / "c.png"))
    ax = seen["fig"].axes[0]
    colours = {}
    for bars in ax.containers:                       # one ErrorbarContainer per curve, labelled
        if bars.get_label() in names:
            colours[bars.get_label()] = matplotlib.colors.to_hex(bars.lines[0].get_color())
    assert sorted(colours) == sorted(names)
    assert len(set(colours.values())) == len(names), colours
