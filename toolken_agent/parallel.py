"""Data-parallel caching: several processes share the frozen pass, each a shard of the batches.

Under ``accelerate launch`` (or ``torchrun``), every process runs the same program; the
caching pass (:func:`toolken_agent.features.extract_features`, the whole cost of
training) gives each process every ``world``-th batch and gathers the results, so every
process ends with the same features, in the same order, as one process would compute
alone. Everything else is cheap and deterministic, so it runs on every process alike;
only the main process prints and writes the checkpoint. A single process never imports
accelerate or touches ``torch.distributed``.

Example (2 GPUs, or ``--multi_gpu`` to launch 2 CPU processes)::

    accelerate launch --num_processes 2 -m toolken_agent.cli train --tools math
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Shard:
    """This process's place among those sharing the work."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mine(self, n: int) -> list[int]:
        """Indices of the ``n`` work items this process runs: every ``world``-th from ``rank``."""
        return list(range(self.rank, n, self.world))


@functools.lru_cache(maxsize=1)
def current_shard() -> Shard:
    """The shard of this process: from the launcher's ``WORLD_SIZE``, else the single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Shard()
    state = _state()
    return Shard(state.process_index, state.num_processes)


def _state() -> Any:
    import torch
    from accelerate import PartialState

    # On a machine without GPUs accelerate needs to be told the processes share CPUs (gloo).
    return PartialState(cpu=not torch.cuda.is_available())


def gather(local: Sequence[Any]) -> list[Any]:
    """Every process's ``local`` items, concatenated in rank order (``local`` alone for one process)."""
    if current_shard().world == 1:
        return list(local)
    from accelerate.utils import gather_object

    return list(gather_object(list(local)))
