"""Prior embeddings: a starting row for each toolken, read from the frozen LM.

ToolkenGPT starts toolken rows at random, so a tool means nothing until trained. The
re-initialization method (Li et al. 2025, arXiv 2506.14248) starts each row from the
tool's name in the LM's own representation space, and keeps it near there during
training (``lambda * ||W - W_prior||``). Kinds, selectable by name:

``random``
    ToolkenGPT's baseline: ``nn.Linear``'s default init, seeded.
``name``
    The paper: run the frozen LM over the name tokens, average the final hidden
    states, L2-normalize, scale to the LM head's mean row norm.
``name+description``
    As ``name``, over ``"name: description"``.
``lm-head``
    Mean of the LM head's *output* rows of the name's tokens. These rows live where
    the logits are computed, so ``w . h`` is high exactly where the LM would say the
    tool's name; final hidden states instead share a large common direction and
    fire everywhere (docs/design-notes.md compares it with ``name``).
``lm-head+description``
    ``lm-head`` with the description's output rows mixed in (weight
    ``DESCRIPTION_WEIGHT``): breaks ties between tools with the same name.

All kinds are scaled to the LM head's mean row norm, so toolken logits start on the
same scale as word logits.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .chat_format import encode_ids
from .defaults import DEFAULT_PRIOR, PRIOR_KINDS  # noqa: F401  (defined with the other defaults, light for the CLI)
from .engine import LanguageModel
from .tool import ToolSpec

DESCRIPTION_WEIGHT = 0.5


def name_text(spec: ToolSpec) -> str:
    """The tool's name as words: ``stock_price`` -> ``stock price``."""
    return spec.name.replace("_", " ").replace("-", " ").strip()


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    for end in (". ", "? ", "! "):
        if end in text:
            return text.split(end, 1)[0] + end.strip()
    return text


def mean_row_norm(lm: LanguageModel) -> float:
    return float(lm.lm_head_fp32().norm(dim=1).mean())


def build_priors(lm: LanguageModel, specs: Sequence[ToolSpec], kind: str = DEFAULT_PRIOR, *, seed: int = 0) -> torch.Tensor:
    """Prior rows ``(n_tools, d)`` in fp32 for ``specs``, of the given ``kind``."""
    if kind not in PRIOR_KINDS:
        raise ValueError(f"unknown prior kind {kind!r} (choose from {', '.join(PRIOR_KINDS)})")
    if kind == "random":
        return random_rows(len(specs), lm.hidden_size, seed=seed)
    if kind == "name":
        rows = hidden_mean(lm, [name_text(s) for s in specs])
    elif kind == "name+description":
        rows = hidden_mean(lm, [f"{name_text(s)}: {s.description}" for s in specs])
    elif kind == "lm-head":
        rows = output_row_mean(lm, [name_text(s) for s in specs])
    else:
        names = F.normalize(output_row_mean(lm, [name_text(s) for s in specs]), dim=-1)
        descs = F.normalize(output_row_mean(lm, [first_sentence(s.description) for s in specs]), dim=-1)
        rows = names + DESCRIPTION_WEIGHT * descs
    return F.normalize(rows, dim=-1) * mean_row_norm(lm)


def random_rows(n: int, d: int, *, seed: int = 0) -> torch.Tensor:
    """``nn.Linear``'s default init, U(-1/sqrt(d), 1/sqrt(d)), from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / d**0.5
    return (torch.rand(n, d, generator=gen) * 2 - 1) * bound


@torch.no_grad()
def hidden_mean(lm: LanguageModel, texts: Sequence[str]) -> torch.Tensor:
    """Average final hidden state of each text, read by the frozen LM ``(n, d)``."""
    rows = []
    for text in texts:
        ids = torch.tensor([encode_ids(lm.tokenizer, text)], device=lm.device)
        hidden = lm.final_hidden(ids)  # (1, T, d)
        rows.append(hidden[0].float().mean(dim=0))
    return torch.stack(rows).cpu()


@torch.no_grad()
def output_row_mean(lm: LanguageModel, texts: Sequence[str]) -> torch.Tensor:
    """Mean LM-head row of each text's tokens ``(n, d)``.

    Text is tokenized after a space, the way a word appears mid-sentence, since those
    are the rows the LM uses when it would say the word.
    """
    weight = lm.lm_head_fp32()
    rows = []
    for text in texts:
        ids = encode_ids(lm.tokenizer, " " + text)
        ids = [i for i in ids if i < weight.shape[0]] or [0]
        rows.append(weight[ids].mean(dim=0))
    return torch.stack(rows).cpu()
