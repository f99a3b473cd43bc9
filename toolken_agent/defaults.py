"""The defaults of training, defined once for :meth:`Toolkens.fit` and ``toolken-agent train``.

``Toolkens.fit`` used to train with a fixed lambda and no sweep while ``train`` swept:
the Python API and the command line gave different toolkens for the same data. Both now
read :data:`FIT`, and a test compares every shared default. This module imports
nothing heavy, so the command line's ``--help`` can show the defaults without torch
(and :data:`TOOL_TIMEOUT` lives here so that describing a decoding run needs no tool code).

    >>> from toolken_agent.defaults import FIT
    >>> FIT.lambdas, FIT.epochs
    ((0.0, 0.001, 0.01, 0.1, 1.0, 10.0), 20)
"""

from __future__ import annotations

from dataclasses import dataclass

TOOL_TIMEOUT = 30.0  # seconds a tool may run (toolken_agent.executor); here so that DecodeConfig needs no tool code

PRIOR_KINDS = ("random", "name", "name+description", "lm-head", "lm-head+description")  # toolken_agent.priors
DEFAULT_PRIOR = "lm-head+description"


@dataclass(frozen=True)
class FitDefaults:
    """What ``train`` and ``Toolkens.fit`` do when told nothing (the benchmarks' ``ours``)."""

    prior: str = DEFAULT_PRIOR
    bias: bool = True  # a firing bias per toolken
    calibrate: bool = True  # biases start where zero-shot toolkens have them: quiet on no-tool requests
    lambdas: tuple[float, ...] = (0.0, 0.001, 0.01, 0.1, 1.0, 10.0)  # swept on a split of the training share
    lambda_: float = 0.01  # the paper's; used when the data is too small to split, or when not sweeping
    epochs: int = 20
    lr: float = 1e-3  # Adam; results barely move over a wide range around it (docs/design-notes.md)
    batch_size: int = 128  # positions per step
    seed: int = 0
    holdout: float = 0.2  # share of conversations held out for the reported accuracy
    negatives: bool = True  # the built-in no-tool requests, when the data holds none
    results: bool = True  # a result turn and a reply after every call without one
    reword: bool = True  # a reworded twin of each training request (toolken_agent.augment.reworded_requests)
    call_false_positives: float = 0.1  # the call gate's target on held-out no-call decisions
    call_reach_miss: float = 0.05  # share of held-out calls the gate's reach may leave out (a radius only with enough of them)


FIT = FitDefaults()
