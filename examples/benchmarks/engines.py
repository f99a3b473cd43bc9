"""The cost of each engine, side by side in one run, printed as ratios.

    python -m examples.benchmarks.engines [--gguf PATH] [--parts decode,caching,train,agent,accuracy]
                                          [--rounds 3] [--tokens 64] [--threads 1] [--weights f16|as-is] [--json OUT]

The same GGUF (default: the embedded SmolLM2-135M-Instruct Q4_1) runs on llama.cpp (as
the engine loads it: its F16 copy unless ``--weights as-is``) and, de-quantized by the
store, on transformers (in the dtype ``load_model`` picks, or ``--dtype``). Every
timed part alternates the ways round by round, so load on the machine hits all alike,
and reports medians:

* ``decode``: seconds per text token, greedy, from one prompt (prefill included):
  transformers ``generate`` and our loop with 13 math toolkens on transformers;
  llama.cpp's own generation (its greedy sampler, ``llama_decode`` per token, a plain
  context without embeddings) and our loop on llama.cpp. Toolkens are kept
  from firing (a large negative bias): the ratio is the cost of the seam and the head
  per token, not of running tools.
* ``caching``: tokens per second of the caching pass (``extract_features``) per engine.
* ``train``: ``Toolkens.fit`` on the math examples (transformers) over one bare frozen
  forward (``final_hidden``) of the same tokens, in the same batches.
* ``agent``: wall seconds per question of ``create_agent(ChatToolken(...))`` on the office
  tools (:mod:`examples.benchmarks.agent_loop`), a head trained on transformers, per engine.
* ``accuracy`` (not in the default parts): the suite's ``select`` on KAMEL-30 and FuncQA
  one-hop, trained on each of transformers, llama.cpp Q4_1 and llama.cpp F16 and scored
  on each (:func:`accuracy`).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable
from unittest.mock import patch

import torch

from toolken_agent import Toolkens, load_toolset
from toolken_agent.augment import example_conversations, with_built_in_negatives, with_result_turns
from toolken_agent.conversation import Message
from toolken_agent.decoding import DecodeConfig, Decoder, Finished
from toolken_agent.engine import LanguageModel
from toolken_agent.features import extract_features, plan_batches
from toolken_agent.model import load_model

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def interleaved(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each way once per round, in turn, after one warm-up each; what each returned, per round."""
    for fn in runs.values():
        fn()
    out: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            out[name].append(fn())
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- decode -----------------------------------------------------------------------------
def with_threads(fn: Callable[[], float], threads: int) -> Callable[[], float]:
    """``fn`` run with ``threads`` torch threads (loading llama.cpp set the process to one)."""
    def run() -> float:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)
    return run


def decode(lm_t: LanguageModel, lm_l: Any, *, tokens: int, rounds: int, torch_threads: int) -> dict[str, Any]:
    import llama_cpp

    toolset = load_toolset("math")
    messages = [Message("user", PROMPT)]

    def ours(lm: LanguageModel) -> Callable[[], float]:
        toolkens = Toolkens.from_priors(lm, toolset)
        with torch.no_grad():
            toolkens.head.bias.fill_(-1e4)
        decoder = Decoder(toolkens)
        config = DecodeConfig(max_new_tokens=tokens, tool_choice="auto", stop=(), nonempty_reply=False)

        def run() -> float:
            start = time.perf_counter()
            for event in decoder.stream(messages, config):
                finished = event
            assert isinstance(finished, Finished)
            return (time.perf_counter() - start) / max(finished.completion_tokens, 1)
        return run

    prompt = Toolkens.from_priors(lm_t, toolset).chat_format.render(messages, add_generation_prompt=True).input_ids

    def hf_generate() -> float:
        ids = torch.tensor([prompt], device=lm_t.device)
        start = time.perf_counter()
        with torch.inference_mode():
            out = lm_t.model.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                      pad_token_id=lm_t.tokenizer.pad_token_id)
        return (time.perf_counter() - start) / (out.shape[1] - len(prompt))

    plain = _plain_context(lm_l)
    sampler = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    llama_cpp.llama_sampler_chain_add(sampler, llama_cpp.llama_sampler_init_greedy())
    prompt_array = (llama_cpp.llama_token * len(prompt))(*prompt)

    def llama_generate() -> float:
        """llama.cpp's own greedy generation (its sampler, a plain context: logits only, no hidden state)."""
        start = time.perf_counter()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(plain), True)
        llama_cpp.llama_decode(plain, llama_cpp.llama_batch_get_one(prompt_array, len(prompt)))
        token = llama_cpp.llama_token(0)
        for _ in range(tokens):
            token.value = llama_cpp.llama_sampler_sample(sampler, plain, -1)
            llama_cpp.llama_decode(plain, llama_cpp.llama_batch_get_one(ctypes.pointer(token), 1))
        return (time.perf_counter() - start) / tokens

    runs = {"hf-generate": with_threads(hf_generate, torch_threads), "hf-toolkens": with_threads(ours(lm_t), torch_threads),
            "llama-generate": llama_generate, "llama-toolkens": ours(lm_l)}
    times = {k: median(v) for k, v in interleaved(runs, rounds).items()}
    return {
        "seconds_per_token": times,
        "tokens_per_second": {k: 1 / v for k, v in times.items()},
        "ratios": {
            "llama-toolkens / llama-generate": times["llama-toolkens"] / times["llama-generate"],
            "hf-toolkens / hf-generate": times["hf-toolkens"] / times["hf-generate"],
            "hf-toolkens / llama-toolkens (speed-up of ours on llama.cpp)": times["hf-toolkens"] / times["llama-toolkens"],
            "hf-generate / llama-generate": times["hf-generate"] / times["llama-generate"],
        },
    }


def _plain_context(lm_l: Any) -> Any:
    """A second llama.cpp context on the same weights, as a plain user runs it: no embeddings."""
    import llama_cpp

    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = 2048, 512, 512
    params.n_threads = params.n_threads_batch = lm_l.threads
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as the engine's context
    return llama_cpp.llama_init_from_model(lm_l.model, params)


# -- caching and train --------------------------------------------------------------------
def math_conversations() -> tuple[Any, list[Any]]:
    toolset = load_toolset("math")
    convs = with_result_turns(with_built_in_negatives(example_conversations(toolset, with_negatives=False)), toolset)
    return toolset, convs


def caching(lm_t: LanguageModel, lm_l: LanguageModel, *, rounds: int, every: int = 4) -> dict[str, Any]:
    """Tokens per second of ``extract_features`` per engine, on every ``every``-th math training conversation."""
    toolset, convs = math_conversations()
    fmt = Toolkens.from_priors(lm_t, toolset).chat_format
    rendered = [fmt.render(c.messages, train=True) for c in convs[::every]]
    tokens = sum(len(r.input_ids) for r in rendered)

    def on(lm: LanguageModel) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            extract_features(lm, rendered)
            return tokens / (time.perf_counter() - start)
        return run

    rates = {k: median(v) for k, v in interleaved({"transformers": on(lm_t), "llama.cpp": on(lm_l)}, rounds).items()}
    return {"tokens": tokens, "tokens_per_second": rates, "ratio llama.cpp / transformers": rates["llama.cpp"] / rates["transformers"]}


def train(lm_t: LanguageModel, *, rounds: int) -> dict[str, Any]:
    toolset = load_toolset("math")
    given = example_conversations(toolset, with_negatives=False)
    _, convs = math_conversations()  # what fit trains on: the same augmentation
    fmt = Toolkens.from_priors(lm_t, toolset).chat_format
    rendered = [fmt.render(c.messages, train=True) for c in convs]
    batches = plan_batches(rendered, 4096)
    pad = lm_t.tokenizer.pad_token_id or 0

    @torch.inference_mode()
    def bare() -> float:
        start = time.perf_counter()
        for batch in batches:
            longest = max(len(rendered[i].input_ids) for i in batch)
            ids = torch.full((len(batch), longest), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(batch):
                ids[row, : len(rendered[i].input_ids)] = torch.tensor(rendered[i].input_ids)
                mask[row, : len(rendered[i].input_ids)] = 1
            lm_t.final_hidden(ids, mask)
        return time.perf_counter() - start

    def fit() -> float:
        start = time.perf_counter()
        Toolkens.fit(lm_t, toolset, given)  # toolken-agent train's defaults
        return time.perf_counter() - start

    seconds = {k: median(v) for k, v in interleaved({"bare-forward": bare, "fit": fit}, rounds).items()}
    return {"tokens": sum(len(r.input_ids) for r in rendered), "seconds": seconds,
            "ratio fit / bare forward": seconds["fit"] / seconds["bare-forward"]}


# -- agent loop ---------------------------------------------------------------------------
def agent(*, questions: int, max_tokens: int = 64) -> dict[str, Any]:
    """Wall seconds per question of ``create_agent(ChatToolken(...), office tools)`` per engine.

    The office toolset's head is trained once (``ours``, on transformers, as
    :mod:`examples.benchmarks.agent_loop` does); each of the first ``questions`` held-out
    requests then runs on one engine after the other, the tools' stores emptied each time.
    """
    import tempfile

    from langchain.agents import create_agent

    from examples.benchmarks.agent_loop import load_questions, run_question, score, summarise, tools_module, train_method
    from toolken_agent import ChatToolken

    ckpt = Path(tempfile.mkdtemp(prefix="engines-agent-")) / "ours"
    start = time.perf_counter()
    fit_report = train_method("ours", None, ckpt, "office")
    trained = time.perf_counter() - start
    tools, items = tools_module("office"), load_questions(limit=questions)
    engines = {"transformers": "transformers", "llama.cpp": "llamacpp"}
    for engine in engines.values():  # load each model and bind the tools before the clock runs
        ChatToolken(toolkens=str(ckpt), engine=engine, max_tokens=1).bind_tools(tools.TOOLS).invoke("Hello")
    records: dict[str, list[dict]] = {k: [] for k in engines}
    for item in items:
        for name, engine in engines.items():
            tools.reset()
            graph = create_agent(ChatToolken(toolkens=str(ckpt), engine=engine, max_tokens=max_tokens), tools.TOOLS)
            t0 = time.perf_counter()
            messages, recursion_error, error = run_question(graph, item["question"])
            records[name].append(score(item, messages, time.perf_counter() - t0, recursion_error=recursion_error, error=error))
    seconds = {k: median([r["seconds"] for r in v]) for k, v in records.items()}
    return {"questions": len(items), "train_seconds": round(trained, 1), "heldout": fit_report.get("heldout"),
            "median_seconds_per_question": seconds,
            "per_question": {k: [r["seconds"] for r in v] for k, v in records.items()},
            "summary": {k: summarise(v) for k, v in records.items()},
            "ratio transformers / llama.cpp": seconds["transformers"] / seconds["llama.cpp"]}


# -- selection across engines ---------------------------------------------------------------
ACCURACY_DATASETS = ("kamel-30", "funcqa-oh")
# (training, test) conversations per data set, seeded samples: llama.cpp's frozen pass runs
# one sequence at a time, and the whole sets on two llama.cpp weights take hours (docs/engines.md).
ACCURACY_CAPS = {"kamel-30": (None, 200), "funcqa-oh": (200, None)}


def accuracy_engines(dtype: str) -> dict[str, LanguageModel]:
    """The same weights three ways: transformers on the Q4_1's de-quantization, llama.cpp Q4_1, llama.cpp F16."""
    from toolken_agent.llamacpp import load_llamacpp

    return {f"transformers {dtype}": load_model("default", dtype=dtype, engine="transformers"),
            "llama.cpp Q4_1": load_llamacpp("default", weights="as-is", threads=1),
            "llama.cpp F16": load_llamacpp("default", weights="f16", threads=1)}


def accuracy(engines: dict[str, LanguageModel], datasets: tuple[str, ...] = ACCURACY_DATASETS) -> dict[str, Any]:
    """The suite's ``select`` (and ``choice``, ``no_call``) of ``ours`` trained on each engine's
    features and scored on each engine's: every pair, on the suite's data sets and splits.

    Features are the suite's teacher-forced frozen pass (:func:`suite.cached_features`,
    kept apart per engine and precision); on llama.cpp that is its batched pass, which at
    the call position (a reply start) is what decoding computes.
    """
    from examples.benchmarks.run import Plan, check_set, load_bench, log, subsample, to_conversation, training_set
    from examples.benchmarks.suite import METHODS, cached_features, fit, score

    ours = next(m for m in METHODS if m.name == "ours")
    out: dict[str, Any] = {}
    for name in datasets:
        plan = Plan(datasets, (0,), 20, ACCURACY_CAPS.get(name, (None, None))[0], ACCURACY_CAPS.get(name, (None, None))[1],
                    0, {}, False, {})
        bench = load_bench(name)
        test_records = subsample(bench.test, plan.max_test)
        test_convs = [to_conversation(r) for r in test_records]
        checks = [to_conversation(r) for r in check_set(name, test_records)]
        train_feats, test_feats, heads, seconds = {}, {}, {}, {}
        for engine, lm in engines.items():
            start = time.perf_counter()
            train_convs, train_feats[engine], _ = training_set(lm, name, bench, plan)
            test_feats[engine] = cached_features(lm, bench.toolset.specs, test_convs)[0]
            check = cached_features(lm, bench.toolset.specs, checks)[0] if checks else None
            seconds[engine] = {"features": round(time.perf_counter() - start, 1)}
            start = time.perf_counter()
            # Trained wholly on its own engine: fit would run the no-tool requests on transformers.
            with patch("toolken_agent.toolkens.training_model", lambda lm: lm):
                heads[engine] = fit(lm, bench.toolset, ours, train_convs, train_feats[engine], seed=0, check=check)[0].head
            seconds[engine]["fit"] = round(time.perf_counter() - start, 1)
            log(f"{name}: {engine} features and fit {seconds[engine]}")
        table = {f"trained {a}, decoded {b}": score(heads[a], test_feats[b]) for a in engines for b in engines}
        for key, res in table.items():
            log(f"{name}: {key}: select {res.get('select', float('nan')):.3f} choice {res.get('choice', float('nan')):.3f}")
        out[name] = {"tools": len(bench.toolset.specs), "train": len(train_convs), "test": len(test_convs),
                     "train_positions": {k: len(v) for k, v in train_feats.items()},
                     "check": len(checks), "seconds": seconds, "scores": table}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", default=None, help="a GGUF file (default: the embedded SmolLM2 Q4_1)")
    parser.add_argument("--weights", default=None, choices=("f16", "as-is"),
                        help="llama.cpp decodes an F16 copy of a quantized GGUF, or the file as it is (default: the engine's)")
    parser.add_argument("--parts", default="decode,caching,train,agent")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--questions", type=int, default=4, help="office requests in the agent part")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--accuracy-datasets", default=",".join(ACCURACY_DATASETS))
    parser.add_argument("--accuracy-dtype", default="float32", help="transformers' dtype in the accuracy part")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from toolken_agent.llamacpp import load_llamacpp

    spec = args.gguf or "default"
    torch_threads = torch.get_num_threads()
    lm_t = load_model(spec, dtype=args.dtype, engine="transformers")
    lm_l = load_llamacpp(spec, threads=args.threads, weights=args.weights)
    parts = args.parts.split(",")
    results: dict[str, Any] = {"gguf": lm_l.gguf.name, "transformers": lm_t.precision, "llama.cpp": lm_l.precision,
                               "llama.cpp threads": lm_l.threads, "torch threads (transformers)": torch_threads}
    print(json.dumps(results))
    for part in parts:
        start = time.perf_counter()
        if part == "decode":
            results[part] = decode(lm_t, lm_l, tokens=args.tokens, rounds=args.rounds, torch_threads=torch_threads)
        elif part == "caching":
            results[part] = caching(lm_t, lm_l, rounds=args.rounds)
        elif part == "train":
            results[part] = train(lm_t, rounds=args.rounds)
        elif part == "agent":
            results[part] = agent(questions=args.questions)
        elif part == "accuracy":
            results[part] = accuracy(accuracy_engines(args.accuracy_dtype), tuple(args.accuracy_datasets.split(",")))
        else:
            raise SystemExit(f"unknown part {part!r}")
        print(f"== {part} ({time.perf_counter() - start:.0f} s)")
        print(json.dumps(results[part], indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
