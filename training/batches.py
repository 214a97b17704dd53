"""Shuffled minibatches with an explicit generator, sharded over ranks, resumable."""
from __future__ import annotations

import torch

from configs.errors import InputError

Tensor = torch.Tensor


class BatchSampler:
    """Shuffled minibatch indices from an explicit generator, sharded over ranks.

    Each epoch draws a permutation of range(n) from `generator` (identical on every rank
    when the generators share a seed) and rank r takes perm[r::world_size]. Indices are
    queued across epoch boundaries, so any batch size works. `state_dict` holds the queue
    and the generator state: a restored sampler continues with exactly the same batches.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, rank: int = 0, world_size: int = 1):
        if batch_size <= 0:
            raise InputError(f"batch size must be > 0, got {batch_size}")
        if n < world_size:
            raise InputError(f"{n} training examples cannot be sharded over {world_size} ranks")
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.rank, self.world_size = rank, world_size
        self.queue = torch.empty(0, dtype=torch.long)

    def next(self) -> Tensor:
        while self.queue.numel() < self.batch_size:
            perm = torch.randperm(self.n, generator=self.generator)[self.rank::self.world_size]
            self.queue = torch.cat([self.queue, perm])
        idx, self.queue = self.queue[:self.batch_size], self.queue[self.batch_size:]
        return idx

    def state_dict(self):
        return {"queue": self.queue.clone(), "generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.queue = state["queue"].clone()
        self.generator.set_state(state["generator"])
