"""Does the reply after a tool result quote it? ``ResultCopy`` settings side by side.

    python -m examples.benchmarks.result_copy [--toolset office|home] [--toolkens DIR] [--model SPEC]
        [--settings 0:0,2:0,2:6,4:6,6:8]

(from the repository root). For every held-out tool request of the toolset, the history
is the request, the gold call and that tool's real result; the reply after it is
decoded greedily once per setting ``copy_bias:continue_bias`` (``DecodeConfig``'s
``result_copy_bias`` and ``result_continue_bias``; ``0:0`` is no copy at all) and scored
with the agent-loop benchmark's :func:`~examples.benchmarks.agent_loop.contains_result`.
The first call does not vary here, so the settings differ only in the reply. Without
``--toolkens``, ``ours`` is trained on the toolset first. Prints a line per setting and
every reply, then a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from examples.benchmarks.agent_loop import TOOLSETS, contains_result, load_questions, tools_module, train_method


def parse_settings(text: str) -> list[tuple[float, float]]:
    """``"2:0,4:6"`` -> ``[(2.0, 0.0), (4.0, 6.0)]``."""
    return [tuple(float(x) for x in part.split(":")) for part in text.split(",") if part.strip()]  # type: ignore[misc]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toolset", choices=sorted(TOOLSETS), default="office")
    parser.add_argument("--toolkens", default=None, help="checkpoint (default: train ours on the toolset first)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--settings", default="0:0,2:0,2:6,4:6,6:8", help="copy_bias:continue_bias, comma-separated")
    args = parser.parse_args(argv)

    from toolken_agent.conversation import Message, ToolCall
    from toolken_agent.decoding import Decoder
    from toolken_agent.events import DecodeConfig, TextChunk
    from toolken_agent.toolkens import Toolkens
    from toolken_agent.toolset import make_toolset

    if args.toolkens is None:
        args.toolkens = str(Path(tempfile.mkdtemp(prefix="result-copy-")) / "ours")
        train_method("ours", args.model, Path(args.toolkens), args.toolset)
    module = tools_module(args.toolset)
    toolset = make_toolset(module.TOOLS, module.__file__)
    decoder = Decoder(Toolkens.load(args.toolkens, toolset, model=args.model))
    items = [q for q in load_questions(TOOLSETS[args.toolset][2]) if q["tool"]]
    histories = []
    for item in items:
        module.reset()
        tool = next(t for t in module.TOOLS if t.name == item["tool"])
        result = str(tool.invoke(item["args"]))
        histories.append((result, [Message("user", item["question"]),
                                   Message("assistant", tool_calls=(ToolCall(item["tool"], item["args"], "c1"),)),
                                   Message("tool", result, tool_call_id="c1", name=item["tool"])]))
    summary = {}
    for copy_bias, continue_bias in parse_settings(args.settings):
        config = DecodeConfig(max_new_tokens=args.max_tokens, result_copy_bias=copy_bias,
                              result_continue_bias=continue_bias)
        start, quoted, replies = time.perf_counter(), 0, []
        for result, history in histories:
            reply = "".join(e.text for e in decoder.stream(history, config) if isinstance(e, TextChunk))
            quoted += contains_result(reply, result)
            replies.append((contains_result(reply, result), result, reply))
        name = f"{copy_bias:g}:{continue_bias:g}"
        summary[name] = round(quoted / len(histories), 3)
        print(f"== {name}: {quoted}/{len(histories)} replies quote the result "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
        for ok, result, reply in replies:
            print(f"   {'OK' if ok else '--'} {result[:40]!r} | {reply[:100]!r}", file=sys.stderr)
    print(json.dumps({"toolset": args.toolset, "toolkens": args.toolkens, "quoted": summary}))
    return summary


if __name__ == "__main__":
    main()
