"""Speed and memory of toolkens against the alternatives, each a ratio measured in one run.

* ``training``: train on cached features (one frozen pass, then epochs over the cache)
  against ToolkenGPT's loop, which runs the frozen LM over the data again every epoch.
  The LM epochs are measured (``lm_epochs_measured``) and scaled to the same epoch count.
* ``decoding``: per-token cost of decoding with toolkens against transformers'
  ``generate`` (:mod:`examples.benchmarks.decode_speed`).
* ``first_call``: seconds from a request to the first tool call, as the number of
  tools grows: a toolken request reads only the question, prompted function calling
  reads every tool's schema first. For prompted calling the figure is the time to its
  first generated token (prefill), a lower bound on its first call, since the call's
  name still has to be written.
* Peak memory of each phase: the process's high-water mark (``VmHWM``, reset through
  ``/proc/self/clear_refs`` before each phase, after handing freed heap back to the OS
  with ``malloc_trim``), both above what was resident when the phase began and as the
  whole process (model included), so the two methods' peaks can be divided even when
  one of them needs nothing beyond the loaded model.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from toolken_agent.chat_format import ChatFormat
from toolken_agent.conversation import Message
from toolken_agent.decoding import CallStarted, DecodeConfig, Decoder
from toolken_agent.features import extract_features
from toolken_agent.head import ToolkenHead
from toolken_agent.model import FrozenLM
from toolken_agent.priors import build_priors
from toolken_agent.toolkens import Toolkens
from toolken_agent.training import TrainConfig, train_head

from . import datasets as ds
from .decode_speed import measure as decode_ratio
from .prompted import render

FIRST_CALL_TOOLS = (10, 30, 60, 100, 234)


def _rss_mib(field: str) -> float | None:
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


def _trim_heap() -> None:
    """Return freed heap pages to the OS (glibc), so a phase's base excludes earlier phases' garbage."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Peak:
    """Peak resident memory of a block: above what was resident when it started, and in all (MiB)."""

    def __enter__(self) -> "Peak":
        _trim_heap()
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.base = _rss_mib("VmRSS")
        self.mib: float | None = None
        self.process_mib: float | None = None
        return self

    def __exit__(self, *exc: Any) -> None:
        high = _rss_mib("VmHWM")
        self.process_mib = None if high is None else round(high, 1)
        self.mib = None if high is None or self.base is None else round(high - self.base, 1)


def training_ratio(lm: FrozenLM, *, conversations: int, epochs: int, lm_epochs: int) -> dict[str, Any]:
    from .run import to_conversation

    bench = ds.load_funcqa(split="oh")
    specs = bench.toolset.specs
    fmt = ChatFormat(lm.tokenizer, [s.name for s in specs], lm.vocab_size)
    rendered = [fmt.render(to_conversation(r).messages, train=True) for r in bench.train[:conversations]]
    config = TrainConfig(epochs=epochs)

    with Peak() as cached_mem:
        start = time.perf_counter()
        feats = extract_features(lm, rendered)
        cache_seconds = time.perf_counter() - start
        head = ToolkenHead(build_priors(lm, specs), bias=True)
        train_head(head, feats, config)
        cached = time.perf_counter() - start

    with Peak() as lm_mem:
        head = ToolkenHead(build_priors(lm, specs), bias=True)
        per_epoch = []
        for epoch in range(lm_epochs):  # ToolkenGPT: the frozen LM runs over the data every epoch
            start = time.perf_counter()
            feats = extract_features(lm, rendered)
            train_head(head, feats, TrainConfig(epochs=1, seed=epoch))
            per_epoch.append(time.perf_counter() - start)
    lm_total = statistics.fmean(per_epoch) * epochs
    return {
        "conversations": len(rendered), "tokens": sum(len(r.input_ids) for r in rendered), "epochs": epochs,
        "cached_seconds": round(cached, 2), "cache_pass_seconds": round(cache_seconds, 2),
        "lm_epoch_seconds": round(statistics.fmean(per_epoch), 2), "lm_epochs_measured": lm_epochs,
        "lm_seconds_for_all_epochs": round(lm_total, 1), "speedup": round(lm_total / cached, 1),
        "cache_mib": round(feats.hidden.numel() * 4 / 2**20, 1),
        "peak_mib_cached": cached_mem.mib, "peak_mib_lm_loop": lm_mem.mib,
        "process_peak_mib_cached": cached_mem.process_mib, "process_peak_mib_lm_loop": lm_mem.process_mib,
    }


def first_call_times(lm: FrozenLM, *, sizes: tuple[int, ...], questions: int) -> dict[str, Any]:
    """Median seconds to the first call (toolkens) and to the first token (prompted), per size."""
    rows = {}
    for n in sizes:
        bench = ds.load_kamel(n_tools=n)
        toolkens = Toolkens.from_priors(lm, bench.toolset)
        decoder = Decoder(toolkens)
        asks = [r["messages"][0]["content"] for r in bench.test[:questions]]
        tk, fc, fc_tokens = [], [], 0
        with Peak() as tk_mem:
            for q in asks:
                start = time.perf_counter()
                for event in decoder.stream([Message("user", q)], DecodeConfig(tool_choice="required", max_new_tokens=1)):
                    if isinstance(event, CallStarted):
                        break
                tk.append(time.perf_counter() - start)
        with Peak() as fc_mem:
            for q in asks:
                start = time.perf_counter()
                ids = lm.tokenizer(render(lm, bench.toolset.specs, [{"role": "user", "content": q}]),
                                   add_special_tokens=False, return_tensors="pt")["input_ids"]
                with torch.inference_mode():
                    hidden, _ = lm.hidden_states(ids.to(lm.device))
                    int(lm.step_logits(hidden[0, -1]).argmax())
                fc.append(time.perf_counter() - start)
                fc_tokens = ids.shape[1]
        rows[str(n)] = {
            "toolkens_seconds": round(statistics.median(tk), 3), "prompted_first_token_seconds": round(statistics.median(fc), 3),
            "prompted_prompt_tokens": fc_tokens, "ratio": round(statistics.median(fc) / statistics.median(tk), 1),
            "peak_mib_toolkens": tk_mem.mib, "peak_mib_prompted": fc_mem.mib,
            "process_peak_mib_toolkens": tk_mem.process_mib, "process_peak_mib_prompted": fc_mem.process_mib,
            "process_peak_ratio": round(fc_mem.process_mib / tk_mem.process_mib, 2) if tk_mem.process_mib and fc_mem.process_mib else None,
        }
    return rows


def measure_all(lm: FrozenLM, *, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {"model_mib": round(sum(p.numel() * p.element_size() for p in lm.model.parameters()) / 2**20, 1)}
    out["training"] = training_ratio(lm, conversations=20 if quick else 200, epochs=20, lm_epochs=1 if quick else 2)
    log(f"training: cached {out['training']['cached_seconds']} s vs LM every epoch {out['training']['lm_seconds_for_all_epochs']} s "
        f"-> {out['training']['speedup']}x")
    out["decoding"] = decode_ratio(lm, tokens=8 if quick else 48, rounds=1 if quick else 3)
    log(f"decoding: toolkens-auto / generate = {out['decoding']['ratio']['toolkens-auto']:.3f}")
    out["first_call"] = first_call_times(lm, sizes=(10, 30) if quick else FIRST_CALL_TOOLS, questions=1 if quick else 3)
    log("first call: " + " ".join(f"{n}:{r['ratio']}x" for n, r in out["first_call"].items()))
    return out
