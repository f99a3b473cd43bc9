"""llama.cpp's JSON-schema grammar against llguidance's, on the same argument-mode calls.

    python -m examples.benchmarks.argument_grammars [--calls 20] [--max-tokens 48] [--json OUT]

(from the repository root; needs the ``[llamacpp]`` extra). For each held-out request
with a gold call, from FuncQA one-hop (the 13 math tools) and the office agent-loop set,
the decoder's argument-mode prompt for the gold tool (:func:`argument_messages`) is fed
to the llama.cpp engine once per grammar, and the arguments are decoded greedily on the
same logits under each:

* ``llguidance``: :class:`toolken_agent.arguments.ArgumentConstraint`, as the decoder
  uses it (compact separators, keys in schema order; it stops right after ``}``);
* ``llama.cpp``: ``LlamaGrammar.from_json_schema``'s GBNF (``json_schema_to_gbnf``) in
  llama.cpp's grammar sampler (``llama_sampler_init_grammar``), applied to the full
  vocabulary each step as llama.cpp's own sampling does; it stops when the best allowed
  token ends the generation (EOS is allowed only once the object is complete).

Both see the same schema (:func:`toolken_agent.arguments._closed_objects`: closed
objects, bounded strings). Reported per grammar: compile seconds per schema, mask
seconds per token (the constraint's own work: llguidance's fill-and-apply plus advance;
llama.cpp's apply plus accept, without copying the logits into its array, reported
apart), and per call whether the text parses and validates, whether the values equal
the gold call's, and whether the two grammars wrote the same object and the same text.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from examples.benchmarks.agent_loop import args_match, load_questions, tools_module
from toolken_agent.argument_mode import argument_messages
from toolken_agent.arguments import ArgumentGrammar, _closed_objects
from toolken_agent.chat_format import ChatFormat
from toolken_agent.conversation import Message
from toolken_agent.tool import ToolSpec
from toolken_agent.toolset import make_toolset

TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")], align=True)  # llama_token_data


def calls(limit: int) -> list[tuple[str, ToolSpec, str, dict]]:
    """``(set, spec, request, gold arguments)``: the first ``limit`` gold calls of each set."""
    from examples.benchmarks.datasets import load_funcqa

    bench = load_funcqa(split="oh")
    specs = {s.name: s for s in bench.toolset.specs}
    by_tool: dict[str, list[tuple[str, ToolSpec, str, dict]]] = {}
    for record in bench.test:
        call = next(c for m in record["messages"] for c in (m.get("tool_calls") or []))["function"]
        args = call["arguments"] if isinstance(call["arguments"], dict) else json.loads(call["arguments"])
        by_tool.setdefault(call["name"], []).append(("math", specs[call["name"]], record["messages"][0]["content"], args))
    rounds = itertools.zip_longest(*by_tool.values())  # one call of each tool in turn
    out = [c for round_ in rounds for c in round_ if c is not None][:limit]
    office = tools_module("office")
    specs = {s.name: s for s in make_toolset(office.TOOLS, office.__file__).specs}
    items = [item for item in load_questions() if item.get("tool")][:limit]
    out.extend(("office", specs[item["tool"]], item["question"], item["args"]) for item in items)
    return out


def with_llguidance(lm: Any, grammar: ArgumentGrammar, schema: dict, prompt: list[int], max_tokens: int) -> dict:
    ctx = lm.new_context()
    try:
        ctx.feed(prompt)
        start = time.perf_counter()
        constraint = grammar.constraint(schema)
        compile_s, mask_s, ids = time.perf_counter() - start, 0.0, []
        while not constraint.done and len(ids) < max_tokens:
            logits = ctx.logits()[None]  # (1, V)
            start = time.perf_counter()
            token = int(constraint(None, logits)[0].argmax())
            constraint.advance(token)
            mask_s += time.perf_counter() - start
            ids.append(token)
            if not constraint.done:
                ctx.feed([token])
    finally:
        ctx.close()
    return {"ids": ids, "steps": len(ids), "compile_seconds": compile_s, "mask_seconds": mask_s, "finished": constraint.done}


def with_llama_grammar(lm: Any, gbnf: str, prompt: list[int], max_tokens: int) -> dict:
    import llama_cpp as ll

    vocab = ll.llama_model_get_vocab(lm.model)
    start = time.perf_counter()
    sampler = ll.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    compile_s = time.perf_counter() - start
    if not sampler:
        raise ValueError("llama.cpp refused the grammar")
    data = np.zeros(lm.vocab_size, dtype=TOKEN_DATA)
    ctx = lm.new_context()
    mask_s = copy_s = 0.0
    ids: list[int] = []
    finished = False
    try:
        ctx.feed(prompt)
        while len(ids) < max_tokens:
            start = time.perf_counter()
            data["id"] = np.arange(lm.vocab_size, dtype=np.int32)  # apply may reorder; ids with the logits each step
            data["logit"] = ctx.logits().numpy()
            array = ll.llama_token_data_array(data=data.ctypes.data_as(ctypes.POINTER(ll.llama_token_data)),
                                              size=lm.vocab_size, selected=-1, sorted=False)
            copy_s += time.perf_counter() - start
            start = time.perf_counter()
            ll.llama_sampler_apply(sampler, ctypes.byref(array))
            token = int(data["id"][int(np.argmax(data["logit"][: array.size]))])
            ended = bool(ll.llama_vocab_is_eog(vocab, token))
            if not ended:
                ll.llama_sampler_accept(sampler, token)
            mask_s += time.perf_counter() - start
            if ended:
                finished = True
                break
            ids.append(token)
            ctx.feed([token])
    finally:
        ctx.close()
        ll.llama_sampler_free(sampler)
    return {"ids": ids, "steps": len(ids) + finished, "compile_seconds": compile_s, "mask_seconds": mask_s,
            "copy_seconds": copy_s, "finished": finished}


def judged(text: str, schema: dict, gold: dict) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {"parses": False, "valid": False, "right": False, "value": None}
    try:
        jsonschema.validate(value, schema)
        valid = True
    except jsonschema.ValidationError:
        valid = False
    return {"parses": True, "valid": valid, "right": valid and args_match(value, gold), "value": value}


def run(limit: int, max_tokens: int) -> dict[str, Any]:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from toolken_agent.model import load_model

    lm = load_model(engine="llamacpp")
    chosen = calls(limit)
    fmt = ChatFormat(lm.tokenizer, sorted({spec.name for _, spec, _, _ in chosen}), lm.vocab_size)
    grammar = ArgumentGrammar(lm.tokenizer, lm.vocab_size)
    records = []
    for which, spec, request, gold in chosen:
        schema = _closed_objects(spec.parameters)
        prompt = fmt.render(argument_messages(spec, [Message("user", request)]), add_generation_prompt=True).input_ids
        ours = with_llguidance(lm, grammar, dict(spec.parameters), prompt, max_tokens)
        theirs = with_llama_grammar(lm, json_schema_to_gbnf(json.dumps(schema)), prompt, max_tokens)
        row: dict[str, Any] = {"set": which, "tool": spec.name, "request": request}
        for name, res in (("llguidance", ours), ("llama.cpp", theirs)):
            text = lm.tokenizer.decode(res["ids"])
            row[name] = {"text": text, "tokens": len(res["ids"]), "steps": res["steps"], "finished": res["finished"],
                         "compile_seconds": res["compile_seconds"], "mask_seconds": res["mask_seconds"],
                         **({"copy_seconds": res["copy_seconds"]} if "copy_seconds" in res else {}),
                         **judged(text, spec.parameters, gold)}
        row["same_text"] = row["llguidance"]["text"].strip() == row["llama.cpp"]["text"].strip()  # GBNF allows a space after }
        row["same_value"] = row["llguidance"]["parses"] and row["llguidance"]["value"] == row["llama.cpp"]["value"]
        records.append(row)
        print(f"{which} {spec.name}: {row['llguidance']['text']!r} | {row['llama.cpp']['text']!r}", flush=True)
    return {"model": lm.name, "precision": lm.precision, "calls": len(records), "summary": summary(records),
            "records": records}


def summary(records: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("llguidance", "llama.cpp"):
        rows = [r[name] for r in records]
        steps = sum(r["steps"] for r in rows)
        out[name] = {
            "parses": sum(r["parses"] for r in rows), "valid": sum(r["valid"] for r in rows),
            "right_values": sum(r["right"] for r in rows), "finished": sum(r["finished"] for r in rows),
            "median_compile_ms": 1000 * statistics.median(r["compile_seconds"] for r in rows),
            "mask_ms_per_token": 1000 * sum(r["mask_seconds"] for r in rows) / max(steps, 1),
        }
        if name == "llama.cpp":
            out[name]["copy_ms_per_token"] = 1000 * sum(r["copy_seconds"] for r in rows) / max(steps, 1)
    out["same_text"] = sum(r["same_text"] for r in records)
    out["same_value"] = sum(r["same_value"] for r in records)
    out["mask ratio llama.cpp / llguidance"] = out["llama.cpp"]["mask_ms_per_token"] / out["llguidance"]["mask_ms_per_token"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20, help="gold calls per set (math, office)")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.calls, args.max_tokens)
    print(json.dumps(result["summary"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
