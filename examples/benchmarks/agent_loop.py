"""Agent-loop benchmark: a LangChain agent on ChatToolken over everyday tools.

    python -m examples.benchmarks.agent_loop [--toolset office|home] [--train METHOD | --toolkens DIR]
        [--model SPEC] [--max-questions N] [--out results.json]

(from the repository root). For each held-out request of the toolset (office:
``examples/agent_loop/test.jsonl``; home: ``home_test.jsonl``) a fresh
``langchain.agents.create_agent(ChatToolken(...), TOOLS)`` runs with ``recursion_limit``
12 (a ``GraphRecursionError`` is caught and counted). Without ``--toolkens`` or
``--train`` the tools are bound zero-shot (description priors only). The acting tools
run against in-memory stubs (the module's ``ACTED`` stores), emptied before each request.

What the loop should do on a tool request: call the right tool once with the right
arguments, then answer in words quoting the result: two model calls. Per request the
record holds the first call (name, arguments), whether they are right, the number of
model calls (AIMessages), whether the final AIMessage is empty, whether it holds the
first tool's result, and the wall seconds. The one-line JSON summary:

* ``right_tool``, ``right_args``, ``answer_has_result``, ``ended_within_2_model_calls``
  (called a tool, then replied without a call by the second model call), ``all_right``
  (all four at once), ``empty_final``: shares of the *tool* requests;
* ``no_tool_quiet``: share of the requests that need no tool on which no call was made;
* ``repeated_call``: share of the tool requests on which one call (same tool, same
  arguments) was made more than once; ``repeated_actions``: requests on which an acting
  tool acted more than once (a reminder set twice, a message sent twice);
* ``recursion_errors``: count over all requests; ``seconds_per_question``: mean.

Scoring is in small pure functions (:func:`args_match`, :func:`contains_result`,
:func:`score`, :func:`summarise`) so tests can pin it without a model.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[2]
TEST_FILE = ROOT / "examples" / "agent_loop" / "test.jsonl"
TRAIN_FILE = ROOT / "examples" / "agent_loop" / "train.jsonl"
# Toolsets: (module with TOOLS, reset() and ACTED, call-only training file, held-out requests).
# "home" was written after every default had been chosen on "office", and is in xLAM's shape.
TOOLSETS = {
    "office": ("examples.agent_loop.office_tools", TRAIN_FILE, TEST_FILE),
    "home": ("examples.agent_loop.home_tools", ROOT / "examples" / "agent_loop" / "home_train.jsonl",
             ROOT / "examples" / "agent_loop" / "home_test.jsonl"),
}
RECURSION_LIMIT = 12


# -- scoring (pure) -------------------------------------------------------------------------
def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def normalise(value: Any) -> Any:
    """A value in comparable form: numbers as floats (42 == 42.0), strings case- and
    whitespace-insensitive, lists and dicts element by element."""
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    return value


def args_match(got: Any, want: Any) -> bool:
    """Whether the arguments a model wrote equal the gold ones after :func:`normalise`
    (the same keys; numbers within 1e-9 relative)."""
    got, want = normalise(got), normalise(want)
    return _same(got, want)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")


def _text(text: str) -> str:
    """Lower case, whitespace collapsed, thousands separators dropped (``1,234.5`` -> ``1234.5``)."""
    text = " ".join(text.split()).casefold()
    return re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)


def result_forms(result: str) -> list[str]:
    """The ways a final answer may quote ``result``: the result text itself; when it is a
    number, that number as the tool wrote it and without a trailing ``.0``."""
    text = _text(result).rstrip(".") if not _NUMBER.match(result.strip()) else result.strip()
    forms = [text] if text else []
    if _NUMBER.match(result.strip()):
        n = result.strip()
        if re.search(r"\.0+$", n):
            forms.append(re.sub(r"\.0+$", "", n))
    return forms


def contains_result(answer: str, result: str) -> bool:
    """Whether ``answer`` quotes ``result`` (see :func:`result_forms`). A number must
    stand alone: ``6.21`` is not found in ``16.215``."""
    answer = _text(answer)
    for form in result_forms(result):
        if _NUMBER.match(form):
            if re.search(rf"(?<![\d.]){re.escape(form)}(?!\d)(?!\.\d)", answer):
                return True
        elif form in answer:
            return True
    return False


def message_text(message: Any) -> str:
    """The text of a LangChain message (string or content blocks)."""
    content = getattr(message, "content", "")
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def score(item: dict, messages: Sequence[Any], seconds: float, *, recursion_error: bool = False,
          error: str | None = None) -> dict:
    """The record of one request, from the agent's messages (``item`` is a test.jsonl line)."""
    ais = [m for m in messages if getattr(m, "type", None) == "ai"]
    tools = [m for m in messages if getattr(m, "type", None) == "tool"]
    calls = [c for m in ais for c in (m.tool_calls or [])]
    first = ais[0].tool_calls[0] if ais and ais[0].tool_calls else None
    final = ais[-1] if ais else None
    final_text = message_text(final) if final is not None else ""
    first_result = message_text(tools[0]) if tools else None
    gold = item.get("tool")
    record = {
        "question": item["question"],
        "gold_tool": gold,
        "gold_args": item.get("args"),
        "tool": first["name"] if first else None,
        "args": first["args"] if first else None,
        "invalid_calls": sum(len(getattr(m, "invalid_tool_calls", None) or []) for m in ais),
        "model_calls": len(ais),
        "tool_calls": len(calls),
        "tools_called": [c["name"] for c in calls],
        "repeated_call": _repeated(calls),
        "first_result": first_result,
        "final_answer": final_text,
        "final_has_calls": bool(final is not None and final.tool_calls),
        "empty_final": not final_text.strip(),
        "recursion_error": recursion_error,
        "error": error,
        "seconds": round(seconds, 2),
    }
    if gold is None:
        record["called"] = bool(calls)
        return record
    record["right_tool"] = record["tool"] == gold
    record["right_args"] = record["right_tool"] and args_match(record["args"], item.get("args") or {})
    record["answer_has_result"] = first_result is not None and not record["final_has_calls"] and contains_result(final_text, first_result)
    # called a tool, then ended (a reply without calls) by the second model call
    record["ended_within_2_model_calls"] = (not recursion_error and error is None and bool(calls)
                                           and len(ais) <= 2 and not record["final_has_calls"])
    record["all_right"] = all_right(record)
    return record


def all_right(record: dict) -> bool:
    """The issue's bar for one tool request: right tool, right arguments, an answer quoting the result, <= 2 model calls."""
    return all(record.get(k) for k in ("right_tool", "right_args", "answer_has_result", "ended_within_2_model_calls"))


def _repeated(calls: Sequence[dict]) -> bool:
    """Whether some call (same tool, same arguments) was made more than once."""
    seen = [(c["name"], normalise(c.get("args"))) for c in calls]
    return any(seen[i] in seen[:i] for i in range(len(seen)))


def summarise(records: Sequence[dict]) -> dict:
    """The one-line summary (see the module docstring for each figure's denominator)."""
    tool = [r for r in records if r["gold_tool"] is not None]
    quiet = [r for r in records if r["gold_tool"] is None]

    def share(rows: Sequence[dict], key: str) -> float | None:
        return round(sum(bool(r[key]) for r in rows) / len(rows), 3) if rows else None

    return {
        "n": len(records),
        "n_tool": len(tool),
        "n_no_tool": len(quiet),
        "right_tool": share(tool, "right_tool"),
        "right_args": share(tool, "right_args"),
        "answer_has_result": share(tool, "answer_has_result"),
        "ended_within_2_model_calls": share(tool, "ended_within_2_model_calls"),
        "all_right": round(sum(all_right(r) for r in tool) / len(tool), 3) if tool else None,
        "empty_final": share(tool, "empty_final"),
        "repeated_call": share(tool, "repeated_call"),
        "recursion_errors": sum(bool(r["recursion_error"]) for r in records),
        # requests on which an acting tool (reminder, message) acted more than once
        "repeated_actions": sum(sum(len(v) for v in (r.get("acted") or {}).values()) > 1 for r in records),
        "errors": sum(r["error"] is not None for r in records),
        "no_tool_quiet": round(sum(not r["called"] for r in quiet) / len(quiet), 3) if quiet else None,
        "mean_model_calls_tool": round(sum(r["model_calls"] for r in tool) / len(tool), 2) if tool else None,
        "seconds_per_question": round(sum(r["seconds"] for r in records) / len(records), 2) if records else None,
    }


def load_questions(path: Path = TEST_FILE, limit: int | None = None) -> list[dict]:
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return items[:limit] if limit else items


# -- running --------------------------------------------------------------------------------
def run_question(agent: Any, question: str, *, recursion_limit: int = RECURSION_LIMIT) -> tuple[list, bool, str | None]:
    """The agent's messages for ``question``; on a recursion error, the last state reached."""
    from langgraph.errors import GraphRecursionError

    messages: list = []
    try:
        for state in agent.stream({"messages": [("user", question)]}, {"recursion_limit": recursion_limit},
                                  stream_mode="values"):
            messages = list(state["messages"])
    except GraphRecursionError:
        return messages, True, None
    except Exception as exc:  # a crash is recorded, and the next request still runs
        traceback.print_exc(file=sys.stderr)
        return messages, False, f"{type(exc).__name__}: {exc}"
    return messages, False, None


# Methods as configurations of the product's own ``Toolkens.fit`` (the names of suite.py).
METHODS: dict[str, dict[str, Any]] = {
    "toolkengpt": dict(prior="random", bias=False, calibrate=False, lambda_=0.0, negatives=False, results=False,
                       reword=False, call_false_positives=None),
    "paper": dict(prior="name", bias=False, calibrate=False, lambda_=0.01, negatives=False, results=False,
                  reword=False, call_false_positives=None),
    "ours": dict(),  # toolken-agent train's defaults
    "ours-no-gate": dict(call_false_positives=None),  # ablation: the head's margin decides whether to call
    "ours-no-results": dict(results=False),  # ablation: call-only data as it is
    "ours-placeholders": dict(placeholders=True),  # ablation: every synthesized result a placeholder, no tool run
    "ours-no-reword": dict(reword=False),  # ablation: no reworded twins of the training requests
}


def tools_module(name: str) -> Any:
    import importlib

    return importlib.import_module(TOOLSETS[name][0])


def train_method(method: str, model: str | None, out_dir: Path, toolset_name: str = "office") -> dict:
    """Train ``method`` on the toolset's call-only training file and save it to ``out_dir``; returns the fit report."""
    from toolken_agent.augment import placeholder_result, with_result_turns
    from toolken_agent.data import load_jsonl
    from toolken_agent.model import load_model
    from toolken_agent.toolkens import Toolkens
    from toolken_agent.toolset import make_toolset
    from toolken_agent.training import LAMBDAS, TrainConfig

    kwargs = dict(METHODS[method])
    lm = load_model(model, engine="transformers")  # training: the batched pass is transformers
    module, data = tools_module(toolset_name), TOOLSETS[toolset_name][1]
    toolset = make_toolset(module.TOOLS, module.__file__)
    conversations = load_jsonl(data, toolset).conversations
    if kwargs.pop("placeholders", False):
        conversations = with_result_turns(conversations, toolset, result=placeholder_result)
    lambda_ = kwargs.pop("lambda_", None)
    lambdas = None if lambda_ is not None else LAMBDAS
    toolkens, report = Toolkens.fit(lm, toolset, conversations, lambdas=lambdas,
                                    config=TrainConfig(lambda_=lambda_ if lambda_ is not None else 0.01), **kwargs)
    toolkens.save(out_dir)
    return report.as_dict()


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toolkens", default=None, help="checkpoint from `toolken-agent train` (default: zero-shot)")
    parser.add_argument("--model", default=None, help="model spec (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--engine", default=None, choices=("auto", "transformers", "llamacpp"),
                        help="what decodes (default: ChatToolken's: llama.cpp for a GGUF when it is installed)")
    parser.add_argument("--max-questions", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=64, help="per model call")
    parser.add_argument("--toolset", choices=sorted(TOOLSETS), default="office",
                        help="tools, training data and held-out requests (home: not used to choose any default)")
    parser.add_argument("--test", type=Path, default=None, help="held-out requests (default: the toolset's)")
    parser.add_argument("--out", type=Path, default=None, help="write the summary and per-question records here (JSON)")
    parser.add_argument("--prompted", action="store_true",
                        help="the anchor: prompted function calling through the model's chat template (no toolkens)")
    parser.add_argument("--train", choices=sorted(METHODS), default=None,
                        help="train this method on the toolset's training file first (into a temporary directory)")
    args = parser.parse_args(argv)
    args.test = args.test or TOOLSETS[args.toolset][2]
    fit_report = None
    if args.train:
        import tempfile

        args.toolkens = str(Path(tempfile.mkdtemp(prefix="agent-loop-")) / args.train)
        t0 = time.perf_counter()
        fit_report = train_method(args.train, args.model, Path(args.toolkens), args.toolset)
        fit_report["wall_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"trained {args.train} in {fit_report['wall_seconds']} s: held-out {fit_report['heldout']}", file=sys.stderr)

    from langchain.agents import create_agent

    from toolken_agent import ChatToolken

    tools = tools_module(args.toolset)

    items = load_questions(args.test, args.max_questions)
    start = time.perf_counter()
    if args.prompted:
        from examples.benchmarks.prompted_chat import PromptedChat
        from toolken_agent.model import load_model

        lm = load_model(args.model, engine="transformers")

        def make_llm() -> Any:
            return PromptedChat(lm=lm, max_tokens=max(args.max_tokens, 96))
    else:
        # Load the model (and build zero-shot rows) before the clock runs per question.
        ChatToolken(model=args.model, toolkens=args.toolkens, engine=args.engine, max_tokens=1).bind_tools(tools.TOOLS).invoke("Hello")

        def make_llm() -> Any:
            return ChatToolken(model=args.model, toolkens=args.toolkens, engine=args.engine, max_tokens=args.max_tokens)
    load_seconds = time.perf_counter() - start

    records = []
    for i, item in enumerate(items, 1):
        tools.reset()
        agent = create_agent(make_llm(), tools.TOOLS)
        t0 = time.perf_counter()
        messages, recursion_error, error = run_question(agent, item["question"])
        record = score(item, messages, time.perf_counter() - t0, recursion_error=recursion_error, error=error)
        record["acted"] = {name: list(store) for name, store in tools.ACTED.items()}
        records.append(record)
        if args.out:  # written as it goes: an interrupted run keeps what it measured
            write_out(args, summarise(records), records)
        print(f"[{i}/{len(items)}] {record['seconds']:.1f}s {item['question']!r} -> {record['tools_called']} "
              f"{record['model_calls']} model calls; final {record['final_answer'][:80]!r}", file=sys.stderr, flush=True)

    summary = summarise(records)
    summary["model_load_seconds"] = round(load_seconds, 1)
    summary["toolkens"] = args.toolkens
    summary["method"] = "prompted" if args.prompted else args.train or ("zero-shot" if args.toolkens is None else "checkpoint")
    summary["toolset"] = args.toolset
    summary["model"] = Path(args.model).stem if args.model else "SmolLM2-135M-Instruct"
    if fit_report is not None:
        summary["fit"] = {k: fit_report.get(k) for k in ("heldout", "lambda", "gate", "results_added", "wall_seconds")}
    print(json.dumps(summary))
    if args.out:
        write_out(args, summary, records)
    return summary


def write_out(args: argparse.Namespace, summary: dict, records: list[dict]) -> None:
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.out.write_text(json.dumps({"summary": summary, "config": config, "records": records}, indent=1,
                                   ensure_ascii=False, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
