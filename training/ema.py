"""Exponential moving average of model parameters, with warm-up.

After the n-th update (n = 0, 1, ...) the shadow weights are

    shadow <- d_n shadow + (1 - d_n) theta,   d_n = min(decay, (1 + n) / (10 + n)).

Without the warm-up a 0.999 EMA still weighs its initial value by 0.999^1500 ~ 0.22
after 1,500 steps; with it, the early average forgets the random initialisation fast.
Buffers (e.g. fixed embedding frequencies) are copied, not averaged.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not (0.0 <= decay < 1.0):
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        shadow = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(shadow, params, 1.0 - d)
        for b_s, b in zip(self.model.buffers(), model.buffers()):
            b_s.copy_(b)
        self.num_updates += 1

    def state_dict(self):
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "model": self.model.state_dict()}

    def load_state_dict(self, state):
        self.decay, self.warmup = state["decay"], state["warmup"]
        self.num_updates = state["num_updates"]
        self.model.load_state_dict(state["model"])
