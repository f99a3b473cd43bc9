"""Run the benchmark suite: every method side by side on one base model, in one run.

    python -m examples.benchmarks.run [--model SPEC] [--quick] [--out docs/benchmarks]

(from the repository root; needs the ``bench`` extra for the figures). Writes
``results-<model>.json`` into ``--out``, then regenerates the tables and figures there
from every results file present (:mod:`examples.benchmarks.report`).

Per data set: the frozen LM runs once over the training and test conversations (cached
on disk per model), then each toolken method trains on the cache with each seed and is
scored at the test turns' decision points (:mod:`examples.benchmarks.suite`); prompted
function calling runs on the same test conversations (:mod:`examples.benchmarks.prompted`).
Then the data-scarcity curve, and speed and memory ratios (:mod:`examples.benchmarks.speed`).

``--quick`` asserts the pipeline on a small slice (two data sets, few examples, one
seed, few epochs); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from toolken_agent import load_model
from toolken_agent.conversation import Conversation, parse_messages
from toolken_agent.features import Features
from toolken_agent.model import FrozenLM
from toolken_agent.priors import PRIOR_KINDS
from toolken_agent.toolkens import Toolkens
from toolken_agent.training import no_call_rate

from . import datasets as ds
from .prompted import evaluate_prompted
from .suite import (
    METHODS,
    Method,
    cached_features,
    cap_per_tool,
    end_to_end,
    examples_per_tool,
    fit,
    reply_start_features,
    score,
    select_examples,
)

LOADERS: dict[str, Callable[[], ds.BenchSet]] = {
    "funcqa-oh": lambda: ds.load_funcqa(split="oh"),
    "funcqa-mh": lambda: ds.load_funcqa(split="mh"),
    "gsm8k-xl": ds.load_gsm8k_xl,
    "kamel-30": lambda: ds.load_kamel(n_tools=30),
    "kamel-60": lambda: ds.load_kamel(n_tools=60),
    "kamel-100": lambda: ds.load_kamel(n_tools=100),
    "kamel-234": lambda: ds.load_kamel(n_tools=234),
    "vh": ds.load_vh,
}
FOREIGN = {"funcqa-oh": "kamel-234", "funcqa-mh": "kamel-234", "gsm8k-xl": "kamel-234"}  # else gsm8k-xl
FOREIGN_QUESTIONS = 100
SCARCITY = {"kamel-30": (1, 2, 5, 10), "funcqa-oh": (1, 5, 10, 40)}
KAMEL_PER_TOOL = 10  # KAMEL-234 has up to 50 training texts per relation: 880k tokens to cache
TRAIN_CAPS = {"gsm8k-xl": 500}  # GSM8K-XL's 5,867 training conversations are 2.2M tokens


@dataclass(frozen=True)
class Plan:
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int
    max_train: int | None  # training conversations per data set (None: all)
    max_test: int | None
    prompted_tests: int  # test conversations for prompted function calling
    scarcity: dict[str, tuple[int, ...]]
    speed: bool
    e2e: dict[str, int]  # data sets decoded for real (seed 0), with at most this many test turns
    methods: tuple[str, ...] | None = None  # a subset of the methods (None: all)

    def chosen(self) -> list[Method]:
        return [m for m in METHODS if self.methods is None or m.name in self.methods]


E2E = {"funcqa-oh": 60, "gsm8k-xl": 20}  # 2-4 s a turn on 2 cores, per method
FULL = Plan(tuple(LOADERS), (0, 1, 2), 20, None, None, 20, SCARCITY, True, E2E)
QUICK = Plan(("funcqa-oh", "kamel-30"), (0,), 3, 60, 30, 5, {"kamel-30": (1, 5)}, True, {"funcqa-oh": 3})


@functools.cache
def load_bench(name: str) -> ds.BenchSet:
    """Each data set converted once per run (KAMEL sizes and foreign questions reuse them)."""
    return LOADERS[name]()


def to_conversation(record: dict) -> Conversation:
    meta = {"answer": record["answer"]} if "answer" in record else {}
    return Conversation(parse_messages(record["messages"]), source=record.get("source", ""), meta=meta)


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def subsample(records: list[dict], limit: int | None, seed: int = 0) -> list[dict]:
    if limit is None or len(records) <= limit:
        return records
    import random

    return random.Random(seed).sample(records, limit)


CHECK_PER_TOOL = 2


def check_set(name: str, test_records: Sequence[dict]) -> list[dict]:
    """Real questions outside the test, for the methods that train on them (``ours``, the ``+check`` baselines).

    Only KAMEL has spare ones (:func:`datasets.kamel_check`), and only KAMEL's training
    texts are unlike its test (synthetic paragraphs against short real questions).
    Elsewhere: none.
    """
    if not name.startswith("kamel-"):
        return []
    return ds.kamel_check(n_tools=int(name.split("-")[1]), exclude=[r["messages"][0]["content"] for r in test_records],
                          per_tool=CHECK_PER_TOOL)


def training_set(lm: FrozenLM, name: str, bench: ds.BenchSet, plan: Plan) -> tuple[list[Conversation], Features, float]:
    """Training conversations and their features.

    KAMEL-N's training texts are exactly the KAMEL-M texts (M > N) of its first N
    relations, and its tools the first N, so every KAMEL size in the run reads its rows
    from one cached pass over the largest one (capped per tool).
    """
    if name.startswith("kamel-"):
        largest = max((d for d in plan.datasets if d.startswith("kamel-")), key=lambda d: int(d.split("-")[1]))
        parent = load_bench(largest)
        records = subsample(cap_per_tool(parent.train, KAMEL_PER_TOOL), plan.max_train)
        feats, seconds = cached_features(lm, parent.toolset.specs, [to_conversation(r) for r in records])
        allowed = set(bench.toolset.names)
        keep = [i for i, r in enumerate(records)
                if all(c["function"]["name"] in allowed for m in r["messages"] for c in (m.get("tool_calls") or []))]
        return [to_conversation(records[i]) for i in keep], select_examples(feats, keep), seconds
    records = subsample(bench.train, min(plan.max_train or 10**9, TRAIN_CAPS.get(name, 10**9)))
    convs = [to_conversation(r) for r in records]
    feats, seconds = cached_features(lm, bench.toolset.specs, convs)
    return convs, feats, seconds


def run_dataset(lm: FrozenLM, name: str, plan: Plan) -> dict[str, Any]:
    bench = load_bench(name)
    specs = bench.toolset.specs
    train_convs, train_feats, train_seconds = training_set(lm, name, bench, plan)
    test_records = subsample(bench.test, plan.max_test)
    test_convs = [to_conversation(r) for r in test_records]
    check_records = check_set(name, test_records)
    log(f"{name}: {len(specs)} tools, {len(train_convs)} train, {len(test_convs)} test, {len(check_records)} check")
    test_feats, test_seconds = cached_features(lm, specs, test_convs)
    check_convs = [to_conversation(r) for r in check_records]
    check_feats = cached_features(lm, specs, check_convs)[0] if check_convs else None
    out: dict[str, Any] = {
        "tools": len(specs), "train": len(train_convs), "test": len(test_convs), "check": len(check_records),
        "train_positions": len(train_feats), "cache_seconds": round(train_seconds + test_seconds, 1),
        "methods": {}, "priors_zero_shot": {},
    }
    fitted: dict[str, Toolkens] = {}
    foreign = FOREIGN.get(name, "gsm8k-xl")
    questions = [r["messages"][0]["content"] for r in subsample(load_bench(foreign).test, FOREIGN_QUESTIONS)]
    negatives = reply_start_features(lm, questions[: plan.max_test or FOREIGN_QUESTIONS])
    out["foreign_negatives"] = {"from": foreign, "questions": len(negatives)}
    for kind in PRIOR_KINDS:  # each prior alone: untrained rows, calibrated bias
        head = Toolkens.from_priors(lm, bench.toolset, prior=kind, calibrate=True).head
        out["priors_zero_shot"][kind] = {**score(head, test_feats), "no_call_foreign": no_call_rate(head, negatives)}
    for method in plan.chosen():
        if method.check_as_data and check_feats is None:
            continue  # no spare real questions in this data set
        start = time.perf_counter()
        lam, sweep = method.lambda_, {}
        seeds = plan.seeds if method.trained else (0,)
        runs = {}
        for seed in seeds:
            toolkens, report = fit(lm, bench.toolset, method, train_convs, train_feats, seed=seed, epochs=plan.epochs,
                                   lambda_=lam, check=check_feats, check_conversations=check_convs)
            if report is not None and seed == seeds[0]:  # the lambda the first seed chose is every seed's
                lam, sweep = report.lambda_, report.lambda_sweep
            head = toolkens.head
            every_call = score(head, test_feats, all_calls=True)  # every hop / plan step, teacher-forced
            runs[str(seed)] = {**score(head, test_feats), "no_call_foreign": no_call_rate(head, negatives)}
            if "select" in every_call:
                runs[str(seed)]["select_all_calls"] = every_call["select"]
            if report is not None and report.mix_scores:  # chosen on the check questions
                runs[str(seed)]["mix"] = report.mix
            if seed == seeds[0]:
                fitted[method.name] = toolkens
        summary = {k: spread([r[k] for r in runs.values()]) for k in ("select", "choice", "no_call", "no_call_foreign", "select_all_calls") if all(k in r for r in runs.values())}
        out["methods"][method.name] = {"describe": method.describe(), "lambda": lam, "lambda_sweep": sweep,
                                       "seeds": runs, **summary, "seconds": round(time.perf_counter() - start, 1)}
        log(f"{name}: {method.name:<11} " + " ".join(f"{k} {v['mean']:.3f}" for k, v in summary.items()))
    prompted_tests = [c for c in test_convs if c.tool_names][: plan.prompted_tests]  # GSM8K-XL's tests hold no gold calls
    demos = [train_convs[i] for i in examples_per_tool(train_convs, 1, seed=0)][:3]
    out["prompted"] = {}
    for variant, shots in (("prompted-fc", ()), ("prompted-fc+icl", demos)) if prompted_tests else ():
        res = evaluate_prompted(lm, specs, prompted_tests, shots).as_dict()
        out["prompted"][variant] = res
        log(f"{name}: {variant:<15} select {res['select']:.3f} over {res['examples']} {res['skipped']}")
    if plan.e2e.get(name):
        out["end_to_end"] = decode_for_real(name, fitted, test_convs[: plan.e2e[name]])
    if name in plan.scarcity:
        out["scarcity"] = scarcity(lm, bench.toolset, train_convs, train_feats, test_feats, plan.scarcity[name], plan,
                                   check_feats)
    return out


def decode_for_real(name: str, fitted: dict[str, Toolkens], tests: list[Conversation]) -> dict[str, Any]:
    """End-to-end decoding per trained toolken method (seed 0), plus the same LM with no tools."""
    results = {}
    for method, toolkens in [("no-tools", fitted["ours"]), *((m, t) for m, t in fitted.items() if m != "zero-shot")]:
        res = end_to_end(toolkens, tests, tool_choice="none" if method == "no-tools" else "auto")
        results[method] = res
        log(f"{name}: e2e {method:<11} tool {res['tool_selection_accuracy']} args {res['argument_exact_match']} "
            f"answer {res['answer_accuracy']} ({res['seconds']:.0f} s)")
    return results


def scarcity(lm: FrozenLM, toolset: Any, train_convs: Sequence[Conversation], train_feats: Features, test_feats: Features,
             ks: Sequence[int], plan: Plan, check_feats: Features | None = None) -> dict:
    """``select`` against training conversations per tool, per trained method and seed.

    A method that chooses lambda on a split of its training data does so here too, on
    the few conversations it gets, as a user with that little data would; one with a
    check set trains on the same check questions at every size.
    """
    curve: dict[str, dict[str, Any]] = {}
    for method in plan.chosen():
        if not method.trained or method.check_as_data:
            continue
        curve[method.name] = {}
        for k in ks:
            runs, lambdas = [], []
            for seed in plan.seeds:
                chosen = examples_per_tool(train_convs, k, seed=seed)
                feats = select_examples(train_feats, chosen)
                toolkens, report = fit(lm, toolset, method, [train_convs[i] for i in chosen], feats, seed=seed,
                                       epochs=plan.epochs, check=check_feats)
                runs.append(score(toolkens.head, test_feats)["select"])
                lambdas.append(report.lambda_)
            curve[method.name][str(k)] = {**spread(runs), "lambdas": lambdas}
        log(f"scarcity {method.name}: " + " ".join(f"{k}:{v['mean']:.3f}" for k, v in curve[method.name].items()))
    return curve


def merged_with_earlier(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """``results`` over an earlier run's file for the same model: data sets not rerun are kept.

    So ``--datasets kamel-234`` refreshes one data set's figures without rerunning the rest.
    """
    if not path.exists():
        return results
    earlier = json.loads(path.read_text())
    if earlier.get("spec") != results["spec"] or earlier.get("quick") != results["quick"]:
        return results
    kept = {k: v for k, v in earlier.get("datasets", {}).items() if k not in results["datasets"]}
    merged = {**earlier, **{k: v for k, v in results.items() if k != "datasets"}}
    merged["datasets"] = {k: (results["datasets"] | kept)[k] for k in [*LOADERS] if k in results["datasets"] or k in kept}
    if "speed" not in results and "speed" in earlier:
        merged["speed"] = earlier["speed"]
    return merged


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model spec (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--out", default="docs/benchmarks", help="directory for results, tables and figures")
    parser.add_argument("--quick", action="store_true", help="a small slice that asserts the pipeline (CI)")
    parser.add_argument("--datasets", default=None, help=f"comma-separated subset of: {', '.join(LOADERS)}")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed and memory ratios")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the methods (default: all)")
    parser.add_argument("--max-train", type=int, default=None, help="cap on training conversations per data set")
    parser.add_argument("--max-test", type=int, default=None, help="cap on test conversations per data set")
    parser.add_argument("--e2e-max", type=int, default=None, help="cap on test turns decoded end to end")
    parser.add_argument("--prompted-tests", type=int, default=None,
                        help="test turns for prompted function calling (0 skips it: its prompt is long on big toolsets)")
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    if args.datasets:
        unknown = [d for d in args.datasets.split(",") if d not in LOADERS]
        if unknown:
            parser.error(f"unknown data set(s): {', '.join(unknown)}")
        plan = Plan(tuple(args.datasets.split(",")), *list(plan.__dict__.values())[1:])
    if args.max_train is not None:
        plan = Plan(**{**plan.__dict__, "max_train": args.max_train})
    if args.max_test is not None:
        plan = Plan(**{**plan.__dict__, "max_test": args.max_test})
    if args.e2e_max is not None:
        plan = Plan(**{**plan.__dict__, "e2e": {k: min(v, args.e2e_max) for k, v in plan.e2e.items()}})
    if args.prompted_tests is not None:
        plan = Plan(**{**plan.__dict__, "prompted_tests": args.prompted_tests})
    if args.no_speed:
        plan = Plan(**{**plan.__dict__, "speed": False})
    if args.methods:
        names = tuple(n.strip() for n in args.methods.split(",") if n.strip())
        unknown = [n for n in names if n not in {m.name for m in METHODS}]
        if unknown:
            parser.error(f"unknown method(s) {', '.join(unknown)}; choose from: {', '.join(m.name for m in METHODS)}")
        plan = Plan(**{**plan.__dict__, "methods": names})
    if not ds.DATA_DIR.is_dir():
        parser.error(f"benchmark data not found at {ds.DATA_DIR} (set TOOLKEN_BENCH_DATA)")

    start = time.perf_counter()
    lm = load_model(args.model, engine="transformers")
    results: dict[str, Any] = {
        "model": lm.name, "spec": lm.spec, "dtype": str(lm.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(), "machine": platform.machine(), "quick": args.quick,
        "date": time.strftime("%Y-%m-%d"), "plan": {k: v for k, v in plan.__dict__.items()},
        "methods": {m.name: m.describe() for m in plan.chosen()}, "datasets": {},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"results-{'quick' if args.quick else lm.name}.json"

    def save() -> None:  # after every data set, atomically: an interrupted run keeps what it finished
        results["seconds"] = round(time.perf_counter() - start, 1)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(merged_with_earlier(path, results), indent=1, default=str))
        tmp.replace(path)

    for name in plan.datasets:
        began = time.perf_counter()
        results["datasets"][name] = run_dataset(lm, name, plan)
        results["datasets"][name]["seconds"] = round(time.perf_counter() - began, 1)
        save()
    if plan.speed:
        from .speed import measure_all

        began = time.perf_counter()
        results["speed"] = measure_all(lm, quick=args.quick, log=log)
        results["speed"]["seconds"] = round(time.perf_counter() - began, 1)
        save()
    log(f"wrote {path} ({results['seconds']:.0f} s)")
    from .report import write_report

    for written in write_report(out):
        log(f"wrote {written}")


if __name__ == "__main__":
    main()
