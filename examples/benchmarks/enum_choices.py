"""Enum fields written by the LM token by token, and chosen with the prompt's lean taken out.

    python -m examples.benchmarks.enum_choices [--toolset office|home] [--toolkens DIR] [--model SPEC]

For every request with a gold call to a tool with enum fields, the call is forced
(``tool_choice``: the tool choice is not measured here) and decoded with
``calibrated_choices=False`` (the LM writes the value, within what the request's named
values leave), ``True`` (every value calibrated, toolken_agent.choices) and, for a
checkpoint, the default ``None`` (tools shown their own examples calibrated only where
the named values leave a field to a value the request calls otherwise).
It prints, per mode, how many enum fields came out right and the seconds the calls took
(side by side in one run: the ratio is the cost of scoring every value twice). Requests: the toolset's held-out
ones, ``examples/agent_loop/enum_requests.jsonl`` (written for this: currencies, baking
ingredients and exercises named as people name them), and, without ``--toolkens``, the
training requests too (a checkpoint shows some of them as demonstrations: not a test).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from examples.benchmarks.agent_loop import ROOT, TOOLSETS, load_questions, tools_module

ENUM_REQUESTS = ROOT / "examples" / "agent_loop" / "enum_requests.jsonl"
MODES = {"written": False, "calibrated": True}


def gold_calls(path: Path, toolset: Any) -> list[tuple[str, str, dict]]:
    """(request, tool, args) of each line's first call: the held-out format or any training format."""
    from toolken_agent.data import load_jsonl

    items = load_questions(path)
    if items and "question" in items[0]:
        return [(i["question"], i["tool"], i["args"]) for i in items if i.get("tool")]
    found = []
    for conversation in load_jsonl(path, toolset).conversations:
        user = next((m for m in conversation.messages if m.role == "user"), None)
        call = next((c for m in conversation.messages for c in m.tool_calls), None)
        if user is not None and call is not None:
            found.append((user.content, call.name, dict(call.args)))
    return found


def run(args: argparse.Namespace) -> dict:
    from toolken_agent.choices import choice_fields
    from toolken_agent.conversation import Message
    from toolken_agent.decoding import CallFinished, Decoder, DecodeConfig
    from toolken_agent.model import load_model
    from toolken_agent.toolkens import Toolkens
    from toolken_agent.toolset import make_toolset

    module_name, train_file, test_file = TOOLSETS[args.toolset]
    toolset = make_toolset(tools_module(args.toolset).TOOLS, args.toolset)
    lm = load_model(args.model, engine=args.engine)
    toolkens = (Toolkens.load(args.toolkens, toolset, lm=lm) if args.toolkens
                else Toolkens.from_priors(lm, toolset))
    files = [test_file, ENUM_REQUESTS] + ([] if args.toolkens else [train_file])
    specs = {s.name: s for s in toolkens.toolset.specs}
    cases = [(q, tool, gold) for path in files for q, tool, gold in gold_calls(path, toolset)
             if tool in specs and choice_fields(dict(specs[tool].parameters))]
    modes = {**MODES, "default": None} if args.toolkens else MODES  # zero-shot, the default is calibrated
    right = {mode: 0 for mode in modes}
    seconds = {mode: 0.0 for mode in modes}
    fields = 0
    for question, tool, gold in cases:
        names = list(choice_fields(dict(specs[tool].parameters)))
        fields += len(names)
        row = []
        for mode, calibrated in modes.items():
            config = DecodeConfig(tool_choice=tool, max_calls=1, max_new_tokens=1, calibrated_choices=calibrated)
            start = time.perf_counter()
            got = [e.call.args for e in Decoder(toolkens).stream([Message("user", question)], config, run_tools=False)
                   if isinstance(e, CallFinished)]
            seconds[mode] += time.perf_counter() - start
            written = dict(got[0]) if got else {}
            hits = [written.get(n) == gold.get(n) for n in names]
            right[mode] += sum(hits)
            row.append(f"{mode}: " + ", ".join(f"{n}={written.get(n)}{'' if h else '(x)'}" for n, h in zip(names, hits)))
        print(f"{question[:64]!r} gold {[gold.get(n) for n in names]} | " + " | ".join(row), file=sys.stderr, flush=True)
    summary = {"toolset": args.toolset, "toolkens": args.toolkens, "requests": len(cases), "fields": fields,
               "right": right, "seconds": {k: round(v, 1) for k, v in seconds.items()},
               "seconds_ratio": round(seconds["calibrated"] / max(seconds["written"], 1e-9), 2), "model": Path(args.model).stem if args.model else "SmolLM2-135M-Instruct"}
    print(json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toolset", choices=sorted(TOOLSETS), default="office")
    parser.add_argument("--toolkens", default=None, help="checkpoint from `toolken-agent train` (default: zero-shot)")
    parser.add_argument("--model", default=None, help="model spec (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--engine", default="transformers", choices=("auto", "transformers", "llamacpp"))
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
