"""Tables and figures from the benchmark's ``results-*.json`` files.

    python -m examples.benchmarks.report [DIR]      (default docs/benchmarks)

Writes ``DIR/RESULTS.md`` (every table, per model) and ``DIR/*.png`` (matplotlib, from
the full runs only; quick runs get tables alone). Everything shown is read from the
results files: nothing here measures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

METHOD_ORDER = ("prompted-fc", "prompted-fc+icl", "zero-shot", "toolkengpt", "paper", "toolkengpt+check", "paper+check",
                "ours")
NEEDS = {
    "prompted-fc": "tool schemas in every prompt; no training",
    "prompted-fc+icl": "schemas plus 3 demonstrations in every prompt; no training",
    "zero-shot": "name + description per tool; no training data",
    "toolkengpt": "training conversations; one frozen pass + head training",
    "paper": "training conversations; one frozen pass + head training",
    "toolkengpt+check": "as toolkengpt, with ours' real check questions added to its training data (KAMEL only)",
    "paper+check": "as paper, with ours' real check questions added to its training data (KAMEL only)",
    "ours": "training conversations (plus 16 built-in requests that need no tool); one frozen pass + "
            "6 head trainings on a split to choose lambda + head training; on KAMEL, up to 2 real questions per "
            "relation (outside the test) join the training data and set the call gate's radius",
}


def _fmt(value: Any, spread: dict | None = None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.3f}"
    if spread and spread.get("max", value) - spread.get("min", value) > 0:
        text += f" ({spread['min']:.2f}-{spread['max']:.2f})"
    return text


def _cell(m: dict, key: str) -> str:
    return _fmt(m[key]["mean"], m[key]) if key in m else "n/a"


def selection_table(results: dict) -> list[str]:
    names = list(results["datasets"])
    lines = ["| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for method in METHOD_ORDER:
        cells = []
        for name in names:
            d = results["datasets"][name]
            if method.startswith("prompted"):
                p = d.get("prompted", {}).get(method)
                cells.append("n/a" if p is None else (f"skipped: {p['skipped'].split(' exceeds')[0]} too long" if p["skipped"]
                                                       else f"{p['select']:.3f} (n={p['examples']})"))
            else:
                m = d["methods"].get(method)
                cells.append("n/a" if m is None or "select" not in m else _fmt(m["select"]["mean"], m["select"]))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _mixes(m: dict) -> str:
    """The tool-choice mix per seed, where a results file records one (``ours`` on KAMEL, before check questions were trained on)."""
    seeds = m.get("seeds", {}).values()
    if not any("mix" in s for s in seeds):
        return ""
    return "; mix " + "/".join(f"{s.get('mix', 1.0):g}" for s in seeds)


def detail_table(results: dict) -> list[str]:
    lines = ["| data set | tools | train / test | method | lambda | select | choice | every call | no-call | no-call, foreign "
             "| seeds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, d in results["datasets"].items():
        for method, m in d["methods"].items():
            lines.append(f"| {name} | {d['tools']} | {d['train']} / {d['test']} | {method} | "
                         f"{'' if m['lambda'] is None else m['lambda']}{_mixes(m)} | {_cell(m, 'select')} | "
                         f"{_cell(m, 'choice')} | {_cell(m, 'select_all_calls')} | {_fmt(m.get('no_call', {}).get('mean'))} | "
                         f"{_fmt(m.get('no_call_foreign', {}).get('mean'))} | "
                         f"{','.join(m['seeds'])} |")
    return lines


def prior_table(results: dict) -> list[str]:
    names = list(results["datasets"])
    lines = ["| prior (untrained, calibrated bias) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    kinds = list(next(iter(results["datasets"].values()))["priors_zero_shot"])
    for kind in kinds:
        cells = [_fmt(results['datasets'][n]['priors_zero_shot'][kind].get('choice')) for n in names]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def paper_ordering(results: dict) -> list[str]:
    lines = ["| data set | random (toolkengpt) | name prior (paper) | paper - random | ours | ours - random |",
             "|---|---|---|---|---|---|"]
    for name, d in results["datasets"].items():
        if any("select" not in d["methods"].get(k, {}) for k in ("toolkengpt", "paper", "ours")):
            continue  # no gold calls in the test set (GSM8K-XL: see end to end), or a run of some methods only
        r, p, o = (d["methods"][k]["select"]["mean"] for k in ("toolkengpt", "paper", "ours"))
        lines.append(f"| {name} | {r:.3f} | {p:.3f} | {p - r:+.3f} | {o:.3f} | {o - r:+.3f} |")
    return lines


def e2e_table(results: dict) -> list[str]:
    lines = []
    for name, d in results["datasets"].items():
        e2e = d.get("end_to_end")
        if not e2e:
            continue
        n = next(iter(e2e.values()))["examples"]
        lines += [f"\n{name}, {n} test turns decoded for real (seed 0; calls may fire mid-text, tools run):\n",
                  "| method | first call's tool | arguments exact | answer |", "|---|---|---|---|"]
        for method, r in e2e.items():
            tool = r["tool_selection_accuracy"] if r.get("call_turns") else None  # no gold calls: nothing to select
            lines.append(f"| {method} | {_fmt(tool)} | {_fmt(r['argument_exact_match'])} | "
                         f"{_fmt(r['answer_accuracy'])} |")
    return lines


def scarcity_table(results: dict) -> list[str]:
    lines = []
    for name, d in results["datasets"].items():
        curve = d.get("scarcity")
        if not curve:
            continue
        ks = list(next(iter(curve.values())))
        zero = d["methods"].get("zero-shot", {}).get("select", {}).get("mean")  # absent from a --methods run without it
        no_data = f" (zero-shot, no data: {zero:.3f})" if zero is not None else ""
        lines += [f"\n{name}: `select` against training conversations per tool{no_data}\n",
                  "| method | " + " | ".join(ks) + " |", "|---|" + "---|" * len(ks)]
        for method, points in curve.items():
            lines.append(f"| {method} | " + " | ".join(_fmt(points[k]["mean"], points[k]) for k in ks) + " |")
        chosen = {k: p["lambdas"] for k, p in curve.get("ours", {}).items() if "lambdas" in p}
        if chosen:
            lines.append("\nours' lambda, chosen on a split of each size's data (per seed): "
                         + "; ".join(f"{k}: {', '.join(f'{x:g}' for x in lams)}" for k, lams in chosen.items()))
    return lines


def speed_tables(speed: dict) -> list[str]:
    t, dec = speed["training"], speed["decoding"]
    lines = [
        f"- Training ({t['conversations']} FuncQA conversations, {t['tokens']:,} tokens, {t['epochs']} epochs): cached "
        f"{t['cached_seconds']} s (frozen pass {t['cache_pass_seconds']} s) against {t['lm_seconds_for_all_epochs']} s "
        f"running the LM every epoch ({t['lm_epoch_seconds']} s an epoch, {t['lm_epochs_measured']} measured): "
        f"**{t['speedup']}x**. Peak memory above the loaded model: {t['peak_mib_cached']} MiB cached "
        f"(cache {t['cache_mib']} MiB) vs {t['peak_mib_lm_loop']} MiB"
        + (f"; whole process {t['process_peak_mib_cached']} vs {t['process_peak_mib_lm_loop']} MiB."
           if t.get("process_peak_mib_cached") else "."),
        f"- Decoding, per token, {dec['toolkens']} toolkens against transformers `generate` "
        f"({dec['tokens']} tokens x {dec['rounds']} rounds): auto **{dec['ratio']['toolkens-auto']:.3f}x**, "
        f"toolkens masked {dec['ratio']['toolkens-none']:.3f}x.",
        "",
        "| tools | toolkens: s to first call | prompted: prompt tokens | prompted: s to first token | ratio | "
        "peak MiB above start, toolkens / prompted | process peak MiB, toolkens / prompted (ratio) |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, r in speed["first_call"].items():
        process = (f"{r['process_peak_mib_toolkens']} / {r['process_peak_mib_prompted']} ({r['process_peak_ratio']}x)"
                   if r.get("process_peak_ratio") else "n/a")
        lines.append(f"| {n} | {r['toolkens_seconds']} | {r['prompted_prompt_tokens']:,} | {r['prompted_first_token_seconds']} | "
                     f"{r['ratio']}x | {r['peak_mib_toolkens']} / {r['peak_mib_prompted']} | {process} |")
    return lines


def total_minutes(results: dict) -> float:
    parts = [d.get("seconds", 0) for d in results["datasets"].values()] + [results.get("speed", {}).get("seconds", 0)]
    return sum(parts) / 60


def model_section(results: dict) -> list[str]:
    plan = results["plan"]
    lines = [f"## {results['model']} ({results['dtype']}, {results['threads']} threads, {results['date']}"
             f"{', QUICK: figures mean nothing' if results['quick'] else ''})", "",
             f"Whole suite: {total_minutes(results):.1f} min (per data set: "
             + ", ".join(f"{n} {d.get('seconds', 0) / 60:.1f}" for n, d in results["datasets"].items())
             + (f", speed {results['speed'].get('seconds', 0) / 60:.1f}" if "speed" in results else "")
             + f"). Seeds {plan['seeds']}, {plan['epochs']} epochs.", "",
             "### Tool selection (`select`: the right toolken wins over every word and toolken at the first call)", ""]
    lines += selection_table(results)
    lines += ["", "FuncQA's training texts are converted to call first, at the reply start, as a chat agent does "
              "(ToolkenGPT fires mid-sentence after a written equation; see `examples/benchmarks/datasets.py`). "
              "GSM8K-XL's calls stay mid-reasoning and its test turns hold no gold calls: its figure is the "
              "end-to-end answer below."]
    lines += ["", "### End to end (FuncQA one-hop, GSM8K-XL)"] + e2e_table(results)
    lines += ["", "### Per method: choice (right tool when forced), every call (`select` at every gold call, "
              "teacher-forced: multi-hop FuncQA, every VirtualHome plan step), no-call (no false fire at the test "
              "texts' text decisions), no-call foreign (no fire on 100 requests from another benchmark)", ""]
    lines += detail_table(results)
    lines += ["", "### Does the prior beat random initialization? (paper's ordering, mean over seeds)", ""]
    lines += paper_ordering(results)
    lines += ["", "### Priors alone (no training; `choice` among toolkens)", ""]
    lines += prior_table(results)
    lines += ["", "### Data scarcity"] + scarcity_table(results)
    if "speed" in results:
        lines += ["", "### Speed and memory (ratios measured side by side in this run)", ""] + speed_tables(results["speed"])
    return lines


def figures(results: dict, out: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    names = [n for n, d in results["datasets"].items() if "select" in d["methods"]["ours"]]
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 1.3 * len(names)), 6.4), sharex=True)
    methods = [m for m in METHOD_ORDER if m != "prompted-fc+icl"]
    width = 0.8 / len(methods)
    for ax, key, label in ((axes[0], "select", "select (auto: fires, right tool)"),
                           (axes[1], "choice", "choice (forced: right tool)")):
        for i, method in enumerate(methods):
            ys = []
            for name in names:
                d = results["datasets"][name]
                if method.startswith("prompted"):  # prompted calling has one figure: the call it writes
                    p = d["prompted"].get(method)
                    ys.append(0 if p is None or p["skipped"] else p["select"])
                else:
                    ys.append(d["methods"].get(method, {}).get(key, {}).get("mean", 0))  # +check: KAMEL only
            ax.bar([x + i * width for x in range(len(names))], ys, width, label=method)
        ax.set_ylabel(label, fontsize=8)
    axes[1].set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names, rotation=20)
    axes[0].set_title(f"{results['model']}: methods side by side (mean over seeds)")
    axes[0].legend(fontsize=7, ncol=3)
    fig.tight_layout()
    path = out / f"selection-{stem}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    curves = {n: d["scarcity"] for n, d in results["datasets"].items() if d.get("scarcity")}
    if curves:
        fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
        for ax, (name, curve) in zip(axes[0], curves.items()):
            for method, points in curve.items():
                ks = [int(k) for k in points]
                ax.plot(ks, [points[str(k)]["mean"] for k in ks], marker="o", label=method)
            ax.axhline(results["datasets"][name]["methods"]["zero-shot"]["select"]["mean"], ls="--", c="gray", label="zero-shot")
            ax.set_xscale("log")
            ax.set_xlabel("training conversations per tool")
            ax.set_ylabel("select")
            ax.set_title(name)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"scarcity-{stem}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    if "speed" in results:
        rows = results["speed"]["first_call"]
        ns = [int(n) for n in rows]
        fig, ax = plt.subplots(figsize=(5, 3.4))
        ax.plot(ns, [rows[str(n)]["toolkens_seconds"] for n in ns], marker="o", label="toolkens: first call")
        ax.plot(ns, [rows[str(n)]["prompted_first_token_seconds"] for n in ns], marker="s", label="prompted: first token")
        ax.set_xlabel("tools")
        ax.set_ylabel("seconds")
        ax.set_title(f"{results['model']}: time to the first call")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"first-call-{stem}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(out: Path) -> list[Path]:
    files = sorted(out.glob("results-*.json"))
    runs = [json.loads(f.read_text()) for f in files]
    lines = ["# Benchmark results", "",
             "Generated by `python -m examples.benchmarks.run` (see README, Results); do not edit by hand.", "",
             "What each method needs to run:", ""]
    lines += [f"- **{m}**: {NEEDS[m]}" for m in METHOD_ORDER]
    written: list[Path] = []
    for results, f in zip(runs, files):
        lines += [""] + model_section(results)
        if not results["quick"]:
            stem = f.stem.removeprefix("results-")
            pictures = figures(results, out, stem)
            written += pictures
            lines += [""] + [f"![{p.stem}]({p.name})" for p in pictures]
    path = out / "RESULTS.md"
    path.write_text("\n".join(lines) + "\n")
    return [path, *written]


if __name__ == "__main__":
    for p in write_report(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks")):
        print(p)
