"""Prompts whose content can be checked on an image: attributes by fixed formulas, bins, templates,
a word-level tokenizer, and the prompt stream of prompt-conditional training.

**Attributes** of an image x `[B, C, H, W]` in [-1, 1], computed on its intensity
I = (mean over channels of x + 1) / 2 in [0, 1], pixel (r, c) with r counting rows downwards:

| attribute    | formula                                                                      |
|--------------|------------------------------------------------------------------------------|
| `thickness`  | ink mass: mean of I over the H W pixels                                      |
| `slant`      | -mu_rc / mu_rr, the second moments of the ink (weights I / sum I about the   |
|              | ink centroid): columns moved per row going *up*; > 0 leans right             |
| `size`       | spread of the ink: sqrt(mu_rr + mu_cc) / H (radius of gyration); 0 if none   |
| `brightness` | mean of I over the pixels with I > 1/10 (0 if none)                          |

Each attribute has three bins, cut at two fixed edges per data set (`BIN_EDGES`): the tertiles of
that data set's train split (`data.split_seed = 0`), rounded, written down by
`python tools/prompt_bins.py`; bin k holds values in [edge_{k-1}, edge_k).

**Prompts** fill a template's slots ({class} and attribute names) with a class name and one synonym
of each bin's words, e.g. "a thick seven leaning right", "seven leaning right and bold". The
tokenizer is word-level over every word the templates, class names and synonyms can produce
(`<pad>` = 0, then the words sorted); the empty prompt (all padding) is the null condition of
classifier-free guidance. Held-out combinations "class:bin" (e.g. "seven:thick") take every train
image of that class in that bin out of prompt-conditional training.
"""
from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch

from configs.errors import ConfigError, InputError

Tensor = torch.Tensor
PAD = "<pad>"


# ---- attributes ---------------------------------------------------------------------------------

def intensity(x: Tensor) -> Tensor:
    """I = (mean over channels of x + 1) / 2, clamped to [0, 1]: `[B, C, H, W] -> [B, H, W]`."""
    return ((x.mean(dim=1) + 1) / 2).clamp(0.0, 1.0)


def thickness(x: Tensor) -> Tensor:
    """Ink mass: mean intensity over the pixels, `[B]`."""
    return intensity(x).mean(dim=(1, 2))


def slant(x: Tensor) -> Tensor:
    """-mu_rc / mu_rr of the ink distribution (rows downwards): > 0 leans right, `[B]` (0 without ink)."""
    w, dr, dc = _moments(x)
    mu_rr, mu_rc = (w * dr * dr).sum(dim=(1, 2)), (w * dr * dc).sum(dim=(1, 2))
    return torch.where(mu_rr > 1e-12, -mu_rc / mu_rr.clamp_min(1e-12), torch.zeros_like(mu_rr)).to(x.dtype)


def _moments(x: Tensor):
    """(w `[B, H, W]` ink weights I / sum I, r - rbar, c - cbar), float64."""
    I = intensity(x).double()
    B, H, W = I.shape
    w = I / I.sum(dim=(1, 2)).clamp_min(1e-12)[:, None, None]
    r = torch.arange(H, dtype=I.dtype)[None, :, None]
    c = torch.arange(W, dtype=I.dtype)[None, None, :]
    rbar, cbar = (w * r).sum(dim=(1, 2)), (w * c).sum(dim=(1, 2))
    return w, r - rbar[:, None, None], c - cbar[:, None, None]


def size(x: Tensor) -> Tensor:
    """Spread of the ink: sqrt(mu_rr + mu_cc) / H, its radius of gyration in image heights, `[B]`
    (0 without ink). A bounding box is too coarse on 8x8 digits (nearly all span the 8 rows)."""
    w, dr, dc = _moments(x)
    return ((w * (dr * dr + dc * dc)).sum(dim=(1, 2)).sqrt() / x.shape[-2]).to(x.dtype)


def brightness(x: Tensor) -> Tensor:
    """Mean intensity over the pixels with I > 1/10, `[B]` (0 if there are none)."""
    I = intensity(x)
    on = (I > 0.1).to(I.dtype)
    return (I * on).sum(dim=(1, 2)) / on.sum(dim=(1, 2)).clamp_min(1.0)


@dataclass(frozen=True)
class Attribute:
    fn: object                         # image `[B, C, H, W]` -> value `[B]`
    bins: Tuple[str, str, str]         # bin names, low to high (unique over all attributes)
    words: Tuple[Tuple[str, ...], ...]  # synonyms of each bin


ATTRIBUTES: Dict[str, Attribute] = {
    "thickness": Attribute(thickness, ("thin", "medium", "thick"),
                           (("thin", "slim"), ("medium", "regular"), ("thick", "bold"))),
    "slant": Attribute(slant, ("left", "upright", "right"),
                       (("leaning left", "slanted left"), ("upright", "straight"), ("leaning right", "slanted right"))),
    "size": Attribute(size, ("small", "midsize", "large"), (("small", "tiny"), ("midsize",), ("large", "big"))),
    "brightness": Attribute(brightness, ("faint", "plain", "bright"), (("faint", "dim"), ("plain",), ("bright",))),
}

#: two bin edges per attribute and data set: the train split's tertiles, rounded (tools/prompt_bins.py)
BIN_EDGES: Dict[str, Dict[str, Tuple[float, float]]] = {
    "digits": {"thickness": (0.301, 0.332), "slant": (-0.0834, 0.0156), "size": (0.321, 0.342),
               "brightness": (0.61, 0.652)},
    "fashion_mnist": {"thickness": (0.216, 0.343), "slant": (-0.00311, 0.0501), "size": (0.296, 0.32),
                      "brightness": (0.563, 0.718)},
}

CLASS_NAMES: Dict[str, Tuple[str, ...]] = {
    "digits": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "fashion_mnist": ("top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"),
}




def attribute_bins(x: Tensor, dataset: str, names: Sequence[str]) -> Tensor:
    """Bin index in {0, 1, 2} of each attribute `names[a]` of each image, `[B, A]` long."""
    edges = BIN_EDGES[dataset]
    cols = []
    for name in names:
        lo, hi = edges[name]
        v = ATTRIBUTES[name].fn(x)
        cols.append((v >= lo).long() + (v >= hi).long())
    return torch.stack(cols, dim=1) if cols else torch.zeros(x.shape[0], 0, dtype=torch.long)


# ---- templates and the tokenizer -----------------------------------------------------------------

def slots(template: str) -> Tuple[str, ...]:
    return tuple(re.findall(r"\{(\w+)\}", template))


def words(text: str) -> List[str]:
    return text.lower().split()


class UnknownWords(InputError):
    """A prompt with words outside the vocabulary."""


class PromptSpec:
    """Templates, class names, attribute bins and the word-level vocabulary of one data set.

    `encode(texts) -> [B, max_len]` token ids (0 = padding, "" -> all padding), `paraphrases(y, bins)`
    every prompt of one (class, bins) combination, `sample_tokens(combo, generator)` one random
    paraphrase per image (for training), `combo_of(y, bins)` the combination index.
    """

    def __init__(self, dataset: str, attributes: Sequence[str] = ("thickness", "slant"),
                 templates: Sequence[str] = ("a {thickness} {class} {slant}",), held_out: Sequence[str] = ()):
        if dataset not in CLASS_NAMES:
            raise ConfigError("data.dataset", dataset, f"a data set with prompt attributes: {sorted(CLASS_NAMES)}")
        attributes = tuple(attributes)
        for a in attributes:
            if a not in ATTRIBUTES:
                raise ConfigError("prompts.attributes", attributes, f"names among {sorted(ATTRIBUTES)}")
        if not templates:
            raise ConfigError("prompts.templates", templates, "at least one template")
        for tpl in templates:
            bad = [s for s in slots(tpl) if s != "class" and s not in attributes]
            if bad or "class" not in slots(tpl):
                raise ConfigError("prompts.templates", tpl, f"a template with a {{class}} slot and slots among "
                                                            f"{['class', *attributes]}")
        self.dataset, self.attributes, self.templates = dataset, attributes, tuple(templates)
        self.class_names = CLASS_NAMES[dataset]
        self.held_out = self._parse_held_out(held_out)
        vocab = set()
        for tpl in self.templates:
            vocab.update(words(re.sub(r"\{\w+\}", " ", tpl)))
        for name in self.class_names:
            vocab.update(words(name))
        for a in attributes:
            for syn in ATTRIBUTES[a].words:
                for w in syn:
                    vocab.update(words(w))
        self.vocab = (PAD, *sorted(vocab))
        self.index = {w: i for i, w in enumerate(self.vocab)}
        shapes = [(len(self.class_names), *(3 for _ in attributes))]
        self.num_combos = int(torch.tensor(shapes[0]).prod())
        self._table, self._counts = self._paraphrase_table()
        self.max_len = self._table.shape[2]

    def _parse_held_out(self, held_out):
        out = []
        bins = {b: (a, i) for a in self.attributes for i, b in enumerate(ATTRIBUTES[a].bins)}
        for entry in held_out:
            cls, _, b = str(entry).partition(":")
            if cls not in self.class_names or b not in bins:
                raise ConfigError("prompts.held_out", tuple(held_out),
                                  f"entries 'class:bin' with a class of {list(self.class_names)} and a bin of "
                                  f"{sorted(bins)}")
            out.append((self.class_names.index(cls), self.attributes.index(bins[b][0]), bins[b][1]))
        return tuple(out)

    # -- text
    def prompt(self, y: int, bins: Sequence[int], template: int = 0, choice: Sequence[int] = ()) -> str:
        """The prompt of class y with attribute bins `bins` by template `template`; `choice[a]`: synonym."""
        fill = {"class": self.class_names[y]}
        for a, (name, b) in enumerate(zip(self.attributes, bins)):
            syn = ATTRIBUTES[name].words[int(b)]
            fill[name] = syn[(choice[a] if a < len(choice) else 0) % len(syn)]
        return " ".join(self.templates[template].format(**fill).split())

    def paraphrases(self, y: int, bins: Sequence[int]) -> List[str]:
        out = []
        for t in range(len(self.templates)):
            ranges = [range(len(ATTRIBUTES[a].words[int(b)])) for a, b in zip(self.attributes, bins)]
            for choice in itertools.product(*ranges):
                p = self.prompt(y, bins, t, choice)
                if p not in out:
                    out.append(p)
        return out

    def unknown(self, text: str) -> List[str]:
        return [w for w in words(text) if w not in self.index]

    def encode(self, texts: Sequence[str], max_len: int = 0) -> Tensor:
        """Token ids `[B, max_len]` (default: self.max_len), 0-padded; UnknownWords names unknown words."""
        L = max_len or self.max_len
        out = torch.zeros(len(texts), L, dtype=torch.long)
        for i, text in enumerate(texts):
            bad = self.unknown(text)
            if bad:
                raise UnknownWords(f"prompt {text!r} has words not in the vocabulary: {bad}")
            ids = [self.index[w] for w in words(text)]
            if len(ids) > L:
                raise InputError(f"prompt {text!r} has {len(ids)} words; the model takes at most {L}")
            out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, tokens: Tensor) -> List[str]:
        return [" ".join(self.vocab[int(i)] for i in row if int(i) != 0) for row in tokens]

    # -- combinations
    def combo_of(self, y: Tensor, bins: Tensor) -> Tensor:
        """Index of (class, bin_1, ..., bin_A) in row-major order, `[B]`."""
        idx = y.long()
        for a in range(len(self.attributes)):
            idx = idx * 3 + bins[:, a]
        return idx

    def combo(self, index: int) -> Tuple[int, Tuple[int, ...]]:
        bins = []
        for _ in self.attributes:
            bins.append(index % 3)
            index //= 3
        return index, tuple(reversed(bins))

    def is_held_out(self, y: Tensor, bins: Tensor) -> Tensor:
        """True for (class, bins) in a held-out combination, `[B]`."""
        out = torch.zeros(y.shape[0], dtype=torch.bool)
        for cls, a, b in self.held_out:
            out |= (y == cls) & (bins[:, a] == b)
        return out

    def _paraphrase_table(self):
        lists = [self.paraphrases(*self.combo(i)) for i in range(self.num_combos)]
        P = max(len(p) for p in lists)
        L = max(len(words(s)) for p in lists for s in p)
        table = torch.zeros(self.num_combos, P, L, dtype=torch.long)
        for i, ps in enumerate(lists):
            table[i, :len(ps)] = self.encode(ps, L)
        return table, torch.tensor([len(p) for p in lists])

    def sample_tokens(self, combo: Tensor, generator=None, drop: float = 0.0) -> Tensor:
        """One uniformly drawn paraphrase of each combination, `[B, max_len]`; each becomes the empty
        prompt (all padding) with probability `drop` (classifier-free guidance's null condition)."""
        device = generator.device if generator is not None else "cpu"
        combo = combo.cpu()
        u = torch.rand(combo.shape, generator=generator, device=device).cpu()
        pick = (u * self._counts[combo]).long().clamp_max(self._counts[combo] - 1)
        tokens = self._table[combo, pick]
        if drop > 0:
            d = torch.rand(combo.shape, generator=generator, device=device).cpu()
            tokens = torch.where((d < drop)[:, None], torch.zeros_like(tokens), tokens)
        return tokens

    # -- files
    def to_json(self) -> dict:
        return {"dataset": self.dataset, "attributes": list(self.attributes), "templates": list(self.templates),
                "held_out": [f"{self.class_names[c]}:{ATTRIBUTES[self.attributes[a]].bins[b]}"
                             for c, a, b in self.held_out],
                "max_len": self.max_len, "vocabulary": list(self.vocab)}

    def save(self, path: str) -> str:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=1)
        os.replace(tmp, path)
        return path


VOCAB_FILE = "vocab.json"


def prompt_spec(config) -> PromptSpec:
    """The `PromptSpec` of `config.prompts` for `config.data.dataset`."""
    p = config.prompts
    return PromptSpec(config.data.dataset, tuple(p.attributes), tuple(p.templates), tuple(p.held_out))


def uses_prompts(config) -> bool:
    return int(config.model.get("text_vocab_size", 0) or 0) > 0


def load_vocabulary(workdir: str, config) -> Tuple[PromptSpec, str]:
    """(spec, path of the vocabulary file): the run's saved vocab.json must equal the config's."""
    spec = prompt_spec(config)
    path = os.path.join(workdir, VOCAB_FILE)
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        if saved.get("vocabulary") != list(spec.vocab) or saved.get("max_len") != spec.max_len:
            raise InputError(f"the vocabulary in {path!r} differs from the one config.prompts builds; the "
                             f"run's prompts settings were changed")
    return spec, path


class PromptStream:
    """Training-time prompts: the train images' combinations and one random paraphrase per draw."""

    def __init__(self, spec: PromptSpec, images: Tensor, labels: Tensor):
        self.spec = spec
        bins = attribute_bins(images, spec.dataset, spec.attributes)
        self.combos = spec.combo_of(labels, bins)

    def __call__(self, idx: Tensor, generator=None, drop: float = 0.0) -> Tensor:
        return self.spec.sample_tokens(self.combos[idx.cpu()], generator, drop)


def prompt_training_set(dataset, spec: PromptSpec):
    """The data set with the train images of held-out combinations removed (a new `Dataset`)."""
    from dataclasses import replace
    if not spec.held_out:
        return dataset
    if dataset.train_labels is None:
        raise InputError(f"prompts need class labels, but data set {dataset.name!r} has none")
    bins = attribute_bins(dataset.train, spec.dataset, spec.attributes)
    keep = ~spec.is_held_out(dataset.train_labels, bins)
    return replace(dataset, train=dataset.train[keep], train_labels=dataset.train_labels[keep])
