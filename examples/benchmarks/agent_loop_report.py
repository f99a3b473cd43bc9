"""The agent-loop results as a markdown table, one row per model and method.

    python -m examples.benchmarks.agent_loop_report [docs/benchmarks/agent-loop]

Reads the JSON files :mod:`examples.benchmarks.agent_loop` writes with ``--out`` and
prints the table that RESULTS.md and README quote.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from examples.benchmarks.agent_loop import all_right

COLUMNS = [
    ("n", "requests"),
    ("right_tool", "right first tool"),
    ("right_args", "right arguments"),
    ("answer_has_result", "answer quotes the result"),
    ("ended_within_2_model_calls", "ended in <= 2 model calls"),
    ("all_right", "all four right"),
    ("empty_final", "empty final reply"),
    ("repeated_call", "repeated call"),
    ("no_tool_quiet", "no call when none is needed"),
    ("seconds_per_question", "s / question"),
]
ORDER = ["prompted", "zero-shot", "toolkengpt", "paper", "ours", "ours-no-gate", "ours-no-results", "ours-placeholders",
         "ours-no-reword"]


def rows(directory: Path) -> list[dict]:
    out = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        summary = data.get("summary", {})
        if summary.get("n", 0) < 1 or "method" not in summary:
            continue  # an interrupted run without its final summary
        if "all_right" not in summary:  # files written before the column: from their records
            tool = [r for r in data.get("records", []) if r.get("gold_tool")]
            summary["all_right"] = round(sum(all_right(r) for r in tool) / len(tool), 3) if tool else None
        out.append(summary)
    return sorted(out, key=lambda s: (s.get("toolset", "office") != "office", s.get("toolset", "office"), s.get("model", ""),
                                      ORDER.index(s["method"]) if s["method"] in ORDER else 99))


def table(summaries: list[dict]) -> str:
    head = "| toolset | model | method | " + " | ".join(label for _, label in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for s in summaries:
        cells = []
        for key, _ in COLUMNS:
            value = s.get(key)
            cells.append("" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value))
        lines.append(f"| {s.get('toolset', 'office')} | {s.get('model', '')} | {s['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks/agent-loop")
    print(table(rows(directory)))
