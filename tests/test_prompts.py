"""Prompts data: attribute formulas on hand-made images (closed forms), bins on the digits train split,
templates and the tokenizer, held-out combinations (training/prompts.py)."""
import json
import os

import pytest
import torch

from configs.default import get_default_config
from configs.errors import ConfigError, InputError
from training.data import get_dataset
from training.prompts import (ATTRIBUTES, BIN_EDGES, PromptSpec, PromptStream, UnknownWords, attribute_bins,
                              brightness, load_vocabulary, prompt_spec, prompt_training_set, size, slant,
                              thickness)


def image(on, H=8, W=8, value=1.0):
    """[1, 1, H, W] in [-1, 1]: -1 background, intensity `value` at the (r, c) of `on`."""
    x = -torch.ones(1, 1, H, W)
    for r, c in on:
        x[0, 0, r, c] = 2 * value - 1
    return x


def test_attribute_formulas_closed_form():
    bar = image([(r, 3) for r in range(1, 7)])                        # vertical, 1 px wide, 6 rows
    fat = image([(r, c) for r in range(1, 7) for c in (3, 4, 5)])     # 3 px wide
    assert thickness(bar).item() == pytest.approx(6 / 64)
    assert thickness(fat).item() == pytest.approx(18 / 64)
    assert slant(bar).item() == pytest.approx(0.0, abs=1e-12)
    # a stroke from bottom-left to top-right: column = 6 - row -> mu_rc / mu_rr = -1, leans right
    right = image([(r, 6 - r) for r in range(0, 7)])
    left = image([(r, r) for r in range(0, 7)])
    assert slant(right).item() == pytest.approx(1.0)
    assert slant(left).item() == pytest.approx(-1.0)
    # half-shear: column = 1 + r // 2 over 8 rows -> mu_rc / mu_rr = 0.5 exactly? compute from definition
    pts = [(r, 6 - r // 2) for r in range(8)]
    rs = torch.tensor([p[0] for p in pts], dtype=torch.float64)
    cs = torch.tensor([p[1] for p in pts], dtype=torch.float64)
    expect = -((rs - rs.mean()) * (cs - cs.mean())).mean() / ((rs - rs.mean()) ** 2).mean()
    assert slant(image(pts)).item() == pytest.approx(expect.item(), rel=1e-6)
    # spread: a bar of rows 1..6 has mu_rr = var{1..6} = 35/12, mu_cc = 0; 3 columns add var{3,4,5} = 2/3
    assert size(bar).item() == pytest.approx((35 / 12) ** 0.5 / 8)
    assert size(fat).item() == pytest.approx((35 / 12 + 2 / 3) ** 0.5 / 8)
    assert size(-torch.ones(1, 1, 8, 8)).item() == 0.0
    dim_bar = image([(r, 3) for r in range(1, 7)], value=0.5)
    assert brightness(dim_bar).item() == pytest.approx(0.5)
    assert brightness(bar).item() == pytest.approx(1.0)
    # intensity 0.05 is below the brightness threshold 1/10 (and the size threshold 1/2)
    assert brightness(image([(0, 0)], value=0.05)).item() == 0.0


def test_bins_split_the_digits_train_split_in_thirds():
    config = get_default_config()
    x = get_dataset(config).train
    names = tuple(ATTRIBUTES)
    bins = attribute_bins(x, "digits", names)
    for a, name in enumerate(names):
        share = torch.bincount(bins[:, a], minlength=3).double() / x.shape[0]
        assert torch.all((share - 1 / 3).abs() < 0.06), (name, share.tolist(), BIN_EDGES["digits"][name])


def test_bin_edges_are_half_open():
    lo, hi = BIN_EDGES["digits"]["thickness"]
    # an image with ink mass exactly lo is in bin 1, just below in bin 0
    n = 64
    x = -torch.ones(2, 1, 8, 8)
    x.view(2, -1)[0, :] = 2 * lo - 1                  # every pixel at intensity lo: mass = lo
    x.view(2, -1)[1, :] = 2 * (lo - 1e-4) - 1
    b = attribute_bins(x, "digits", ("thickness",))[:, 0]
    assert b.tolist() == [1, 0], n


def spec(**kw):
    config = get_default_config()
    for k, v in kw.items():
        config.prompts[k] = v
    return prompt_spec(config)


def test_vocabulary_tokenizer_and_paraphrases():
    s = spec()
    assert s.vocab[0] == "<pad>" and list(s.vocab[1:]) == sorted(s.vocab[1:])
    for w in ("a", "seven", "thick", "bold", "leaning", "right", "upright", "that", "and"):
        assert w in s.vocab
    tok = s.encode(["a thick seven leaning right", ""])
    assert tok.shape == (2, s.max_len)
    assert (tok[1] == 0).all()                                 # the empty prompt: all padding
    assert s.decode(tok)[0] == "a thick seven leaning right"
    assert s.prompt(7, (2, 2)) == "a thick seven leaning right"
    para = s.paraphrases(7, (2, 2))
    assert "seven leaning right and thick" in para and "a bold seven slanted right" in para and "a seven" in para
    assert len(para) == len(set(para)) == 4 * 4 + 1            # 4 templates x 2 x 2 synonyms, + "a seven"
    with pytest.raises(UnknownWords, match=r"\['purple'\]"):
        s.encode(["a purple seven"])
    assert isinstance(UnknownWords("x"), InputError)


def test_training_draws_cover_paraphrases_and_drop_to_the_empty_prompt():
    s = spec()
    combo = s.combo_of(torch.full((4000,), 7), torch.tensor([[2, 2]]).repeat(4000, 1))
    g = torch.Generator().manual_seed(0)
    tokens = s.sample_tokens(combo, g, drop=0.25)
    texts = s.decode(tokens)
    empty = sum(t == "" for t in texts) / len(texts)
    assert abs(empty - 0.25) < 0.03
    drawn = {t for t in texts if t}
    assert drawn == set(s.paraphrases(7, (2, 2)))              # every paraphrase, nothing else


def test_held_out_combinations_leave_training():
    config = get_default_config()
    config.prompts.held_out = ("seven:thick", "three:left")
    s = prompt_spec(config)
    ds = get_dataset(config)
    bins = attribute_bins(ds.train, "digits", s.attributes)
    held = ((ds.train_labels == 7) & (bins[:, 0] == 2)) | ((ds.train_labels == 3) & (bins[:, 1] == 0))
    assert held.sum() > 10
    kept = prompt_training_set(ds, s)
    assert kept.train.shape[0] == ds.train.shape[0] - int(held.sum())
    stream = PromptStream(s, kept.train, kept.train_labels)
    texts = s.decode(stream(torch.arange(kept.train.shape[0]), torch.Generator().manual_seed(1)))
    assert not any("seven" in t and ("thick" in t or "bold" in t) for t in texts)
    assert not any("three" in t and "left" in t for t in texts)
    assert any("seven" in t and "thin" in t for t in texts)
    with pytest.raises(ConfigError, match="held_out"):
        spec(held_out=("seven:purple",))


def test_template_slots_are_checked():
    with pytest.raises(ConfigError, match="templates"):
        spec(templates=("a {colour} {class}",))
    with pytest.raises(ConfigError, match="templates"):
        spec(templates=("a {thickness} thing",))
    s = spec(attributes=("size",), templates=("a {size} {class}",))
    assert s.prompt(1, (2,)) == "a large one"


def test_vocabulary_file_is_checked_against_the_config(tmp_path):
    config = get_default_config()
    s = prompt_spec(config)
    path = s.save(str(tmp_path / "vocab.json"))
    assert json.load(open(path))["vocabulary"] == list(s.vocab)
    assert load_vocabulary(str(tmp_path), config)[1] == path
    config.prompts.templates = ("a {class} drawn {thickness} {slant}",)
    with pytest.raises(InputError, match="differs"):
        load_vocabulary(str(tmp_path), config)
    assert os.path.exists(path)


def test_fashion_mnist_prompts():
    s = PromptSpec("fashion_mnist", ("thickness", "slant"), ("a {thickness} {class} {slant}",))
    assert s.prompt(9, (0, 1)) == "a thin boot upright"
    with pytest.raises(ConfigError, match="data set with prompt attributes"):
        PromptSpec("moons")
