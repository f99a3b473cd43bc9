"""The cost of each engine, side by side in one run, printed as ratios.

    python -m examples.benchmarks.engines [--gguf PATH] [--parts decode,caching,train,agent,accuracy]
                                          [--rounds 3] [--tokens 64] [--threads 1] [--f16] [--json OUT]

The same GGUF (default: the embedded SmolLM2-135M-Instruct Q4_1; ``--f16`` first writes
an F16 copy of it with ``llama_model_quantize``) runs on llama.cpp and, de-quantized by
the store, on transformers (in the dtype ``load_model`` picks, or ``--dtype``). Every
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
* ``agent``: wall seconds per question of the agent loop (tools run) with a head trained
  on transformers, per engine.
* ``accuracy``: tool selection on FuncQA one-hop (``shared/data``), trained on
  transformers and decoded on each engine, against trained and decoded on llama.cpp.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from toolken_agent import Toolkens, load_toolset
from toolken_agent.augment import example_conversations, with_built_in_negatives, with_result_turns
from toolken_agent.conversation import Message
from toolken_agent.data import split_holdout
from toolken_agent.decoding import DecodeConfig, Decoder, Finished
from toolken_agent.engine import LanguageModel
from toolken_agent.features import extract_features, plan_batches
from toolken_agent.model import load_model
from toolken_agent.store import embedded_gguf
from toolken_agent.training import TrainConfig

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


def caching(lm_t: LanguageModel, lm_l: LanguageModel, *, rounds: int) -> dict[str, Any]:
    toolset, convs = math_conversations()
    rendered = Toolkens.from_priors(lm_t, toolset).chat_format
    rendered = [rendered.render(c.messages, train=True) for c in convs]
    tokens = sum(len(r.input_ids) for r in rendered)

    def on(lm: LanguageModel) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            extract_features(lm, rendered)
            return tokens / (time.perf_counter() - start)
        return run

    rates = {k: median(v) for k, v in interleaved({"transformers": on(lm_t), "llama.cpp": on(lm_l)}, rounds).items()}
    return {"tokens": tokens, "tokens_per_second": rates, "ratio llama.cpp / transformers": rates["llama.cpp"] / rates["transformers"]}


def train(lm_t: LanguageModel, *, rounds: int) -> tuple[dict[str, Any], Toolkens]:
    toolset = load_toolset("math")
    given = example_conversations(toolset, with_negatives=False)
    _, convs = math_conversations()  # what fit trains on: the same augmentation
    fmt = Toolkens.from_priors(lm_t, toolset).chat_format
    rendered = [fmt.render(c.messages, train=True) for c in convs]
    batches = plan_batches(rendered, 4096)
    pad = lm_t.tokenizer.pad_token_id or 0
    fitted: list[Toolkens] = []

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
        toolkens, _ = Toolkens.fit(lm_t, toolset, given, lambdas=(0, 0.001, 0.01, 0.1, 1, 10), config=TrainConfig())
        fitted[:] = [toolkens]
        return time.perf_counter() - start

    seconds = {k: median(v) for k, v in interleaved({"bare-forward": bare, "fit": fit}, rounds).items()}
    return {"tokens": sum(len(r.input_ids) for r in rendered), "seconds": seconds,
            "ratio fit / bare forward": seconds["fit"] / seconds["bare-forward"]}, fitted[0]


# -- agent loop ---------------------------------------------------------------------------
def agent(trained: Toolkens, lm_l: LanguageModel, *, rounds: int, questions: int = 6) -> dict[str, Any]:
    toolset, convs = math_conversations()
    _, held = split_holdout(len(convs), 0.2, seed=0)
    asks = [[m for m in convs[i].messages if m.role in ("system", "user")][:2] for i in held][:questions]
    decoders = {"transformers": Decoder(trained), "llama.cpp": Decoder(replace(trained, lm=lm_l))}

    def on(decoder: Decoder) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            for ask in asks:
                for _ in decoder.stream(ask, DecodeConfig(max_new_tokens=64), run_tools=True):
                    pass
            return (time.perf_counter() - start) / len(asks)
        return run

    seconds = {k: median(v) for k, v in interleaved({k: on(d) for k, d in decoders.items()}, rounds).items()}
    return {"questions": len(asks), "seconds_per_question": seconds,
            "ratio transformers / llama.cpp": seconds["transformers"] / seconds["llama.cpp"]}


# -- selection across engines ---------------------------------------------------------------
def accuracy(lm_t: LanguageModel, lm_l: LanguageModel, *, limit: int | None = None) -> dict[str, Any]:
    from examples.benchmarks.datasets import load_funcqa
    from examples.benchmarks.run import to_conversation
    from toolken_agent.evaluation import evaluate

    bench = load_funcqa(split="oh")
    train_convs = [to_conversation(r) for r in bench.train]
    tests = [to_conversation(r) for r in bench.test][:limit]
    config = DecodeConfig(max_new_tokens=48)
    out: dict[str, Any] = {"train": len(train_convs), "test": len(tests)}
    on_t, _ = Toolkens.fit(lm_t, bench.toolset, train_convs, lambdas=None, config=TrainConfig())
    on_l, _ = Toolkens.fit(lm_l, bench.toolset, train_convs, lambdas=None, config=TrainConfig())
    for name, toolkens in (("trained transformers, decoded transformers", on_t),
                           ("trained transformers, decoded llama.cpp", replace(on_t, lm=lm_l)),
                           ("trained llama.cpp, decoded llama.cpp", on_l)):
        report = evaluate(toolkens, tests, config)
        out[name] = {"tool_selection": report.tool_right / max(report.examples, 1),
                     "arguments": report.args_right / max(report.args_scored, 1),
                     "answers": report.answers_right / max(report.answers, 1), "seconds": report.seconds}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", default=None, help="a GGUF file (default: the embedded SmolLM2 Q4_1)")
    parser.add_argument("--f16", action="store_true", help="run an F16 copy of the GGUF instead")
    parser.add_argument("--parts", default="decode,caching,train,agent")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--accuracy-limit", type=int, default=None, help="test conversations for accuracy (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from toolken_agent.llamacpp import f16_gguf, load_llamacpp

    spec = args.gguf or "default"
    if args.f16:
        spec = str(f16_gguf(Path(args.gguf) if args.gguf else embedded_gguf()))
    torch_threads = torch.get_num_threads()
    lm_t = load_model(spec, dtype=args.dtype, engine="transformers")
    lm_l = load_llamacpp(spec, threads=args.threads)
    parts = args.parts.split(",")
    results: dict[str, Any] = {"gguf": lm_l.gguf.name, "transformers": lm_t.precision, "llama.cpp": lm_l.precision,
                               "llama.cpp threads": lm_l.threads, "torch threads (transformers)": torch_threads}
    print(json.dumps(results))
    trained = None
    for part in parts:
        start = time.perf_counter()
        if part == "decode":
            results[part] = decode(lm_t, lm_l, tokens=args.tokens, rounds=args.rounds, torch_threads=torch_threads)
        elif part == "caching":
            results[part] = caching(lm_t, lm_l, rounds=args.rounds)
        elif part == "train":
            results[part], trained = train(lm_t, rounds=args.rounds)
        elif part == "agent":
            if trained is None:
                _, trained = train(lm_t, rounds=0)
            results[part] = agent(trained, lm_l, rounds=args.rounds)
        elif part == "accuracy":
            results[part] = accuracy(lm_t, lm_l, limit=args.accuracy_limit)
        else:
            raise SystemExit(f"unknown part {part!r}")
        print(f"== {part} ({time.perf_counter() - start:.0f} s)")
        print(json.dumps(results[part], indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
