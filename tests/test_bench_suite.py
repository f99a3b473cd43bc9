"""The benchmark's machinery (examples/benchmarks): scoring, subsets, prompted calling, the pipeline.

Scoring and subsets are pinned on hand-made features whose right answers are known;
prompted function calling on the tiny model (its reuse of the shared prefix's KV cache
must not change a reply); the whole pipeline with ``--quick`` on the real default model,
when the benchmark data is present.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.benchmarks import datasets as D  # noqa: E402
from examples.benchmarks.prompted import generate_calls, parse_call  # noqa: E402
from examples.benchmarks.suite import cap_per_tool, examples_per_tool, first_call_rows, score, select_examples  # noqa: E402
from toolken_agent.conversation import Conversation, Message, ToolCall  # noqa: E402
from toolken_agent.features import Features  # noqa: E402
from toolken_agent.head import ToolkenHead  # noqa: E402

V = 10  # vocabulary size of the hand-made features


def features(rows: list[tuple[list[float], float, int, bool, int]]) -> Features:
    """Rows of (hidden, best word logit, target (-1 text, k toolken k), decision, example)."""
    hidden = torch.tensor([r[0] for r in rows])
    target = torch.tensor([V + r[2] if r[2] >= 0 else 3 for r in rows])
    return Features(hidden=hidden, vocab_lse=torch.zeros(len(rows)), vocab_max=torch.tensor([r[1] for r in rows]),
                    target_logit=torch.zeros(len(rows)), target=target, decision=torch.tensor([r[3] for r in rows]),
                    example=torch.tensor([r[4] for r in rows]), vocab_size=V)


def identity_head() -> ToolkenHead:
    """Two toolkens whose logits are the hidden state's two coordinates."""
    return ToolkenHead(torch.eye(2), bias=False)


def test_score_counts_a_call_right_only_when_the_gold_toolken_beats_words_and_toolkens():
    feats = features([
        ([5.0, 1.0], 2.0, 0, True, 0),  # toolken 0 wins over words and toolken 1: right
        ([5.0, 1.0], 9.0, 0, True, 1),  # right toolken, but a word wins: wrong select, right choice
        ([1.0, 5.0], 2.0, 0, True, 2),  # the other toolken wins: wrong
        ([1.0, 1.0], 2.0, -1, True, 0),  # text decision, no toolken fires: right no-call
        ([3.0, 1.0], 2.0, -1, True, 1),  # text decision, a toolken fires: wrong no-call
        ([9.0, 9.0], 0.0, -1, False, 1),  # not a decision: ignored
    ])
    s = score(identity_head(), feats)
    assert s["calls"] == 3 and s["text_decisions"] == 2
    assert s["select"] == pytest.approx(1 / 3)
    assert s["choice"] == pytest.approx(2 / 3)
    assert s["no_call"] == pytest.approx(1 / 2)


def test_first_call_rows_keep_each_examples_first_call_only():
    feats = features([
        ([0.0, 0.0], 0.0, 1, True, 0),
        ([0.0, 0.0], 0.0, 0, True, 0),  # second call of example 0
        ([0.0, 0.0], 0.0, -1, True, 1),
        ([0.0, 0.0], 0.0, 0, True, 1),
    ])
    assert first_call_rows(feats).tolist() == [0, 3]
    assert score(identity_head(), feats, all_calls=True)["calls"] == 3


def test_select_examples_renumbers_the_chosen_examples_in_order():
    feats = features([([float(i), 0.0], 0.0, 0, True, i) for i in range(5)])
    sub = select_examples(feats, [3, 1])
    assert sub.example.tolist() == [1, 0]  # row order kept, example ids renumbered by position in the list
    assert sub.hidden[:, 0].tolist() == [1.0, 3.0]


def _record(tool: str) -> dict:
    call = {"id": "c", "type": "function", "function": {"name": tool, "arguments": "{}"}}
    return {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [call]}]}


def test_cap_per_tool_keeps_at_most_cap_per_tool_in_original_order():
    records = [_record("a") for _ in range(5)] + [_record("b") for _ in range(2)]
    for i, r in enumerate(records):
        r["i"] = i
    kept = cap_per_tool(records, 3, seed=1)
    names = [r["messages"][1]["tool_calls"][0]["function"]["name"] for r in kept]
    assert names.count("a") == 3 and names.count("b") == 2
    assert [r["i"] for r in kept] == sorted(r["i"] for r in kept)


def test_examples_per_tool_draws_k_conversations_per_tool_and_ignores_ones_without_calls():
    def conv(tool: str | None) -> Conversation:
        calls = (ToolCall(tool, {}, "c"),) if tool else ()
        return Conversation((Message("user", "q"), Message("assistant", "" if tool else "hi", calls)))

    convs = [conv("a")] * 4 + [conv("b")] * 1 + [conv(None)] * 3
    chosen = examples_per_tool(convs, 2, seed=0)
    assert len([i for i in chosen if i < 4]) == 2 and 4 in chosen and not any(i >= 5 for i in chosen)
    assert examples_per_tool(convs, 2, seed=0) == chosen  # seeded


@pytest.mark.parametrize("text, name, args", [
    ('<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>', "add", {"a": 1}),
    ('{"name": "add", "arguments": {"a": 1', "add", None),  # cut off: the name counts, the arguments do not
    ("The answer is 4.", None, None),
    ('<tool_call>{"name": "add", "arguments": "a=1"}</tool_call>', "add", None),
])
def test_parse_call_reads_the_name_and_only_well_formed_arguments(text, name, args):
    assert parse_call(text) == (name, args)


def test_generate_calls_gives_the_same_replies_with_the_shared_prefix_cached(tiny_lm):
    tok = tiny_lm.tokenizer
    prefix = tok("tools: add, multiply, weather. question:", add_special_tokens=False)["input_ids"]
    prompts = [prefix + tok(q, add_special_tokens=False)["input_ids"] for q in (" one plus two", " rain in Oslo", " hi")]
    together = generate_calls(tiny_lm, prompts, max_new_tokens=6)
    alone = [generate_calls(tiny_lm, [p], max_new_tokens=6)[0] for p in prompts]
    assert together == alone


@pytest.mark.real_model
def test_quick_benchmark_pipeline_writes_every_section(tmp_path):
    if not D.default_data_dir().is_dir():
        pytest.skip("benchmark data not found")
    from examples.benchmarks.run import main

    main(["--quick", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results-quick.json").read_text())
    assert set(results["datasets"]) == {"funcqa-oh", "kamel-30"}
    for d in results["datasets"].values():
        given_check = {"toolkengpt+check", "paper+check"} if d["check"] else set()  # the baselines given ours' check questions
        assert set(d["methods"]) == {"zero-shot", "toolkengpt", "paper", "ours"} | given_check
        for m in d["methods"].values():
            assert 0.0 <= m["select"]["mean"] <= m["choice"]["mean"] + 1e-9 <= 1.0 + 1e-9
        assert set(d["prompted"]) == {"prompted-fc", "prompted-fc+icl"}
        assert set(d["priors_zero_shot"]) == {"random", "name", "name+description", "lm-head", "lm-head+description"}
    assert set(results["datasets"]["funcqa-oh"]["end_to_end"]) == {"no-tools", "toolkengpt", "paper", "ours"}
    assert results["datasets"]["kamel-30"]["scarcity"]["ours"].keys() == {"1", "5"}
    assert results["datasets"]["kamel-30"]["check"] > 0 == results["datasets"]["funcqa-oh"]["check"]  # spare real questions: KAMEL only
    speed = results["speed"]
    assert speed["training"]["speedup"] > 0 and speed["decoding"]["ratio"]["hf-generate"] == 1.0
    assert set(speed["first_call"]) == {"10", "30"}
    report = (tmp_path / "RESULTS.md").read_text()
    assert "QUICK" in report and "| ours |" in report


def _calls(n: int) -> list[Conversation]:
    """``n`` call-only conversations over the small toolset's two tools."""
    cities = ["Paris", "Oslo", "Rome"]
    out = []
    for i in range(n):
        call, request = ((ToolCall("add", {"a": i, "b": 2}, "c"), f"What is {i} plus 2?") if i % 2 else
                         (ToolCall("weather_now", {"city": cities[i % 3]}, "c"), f"How is the weather in {cities[i % 3]}?"))
        out.append(Conversation((Message("user", request), Message("assistant", "", (call,)))))
    return out


def _features(lm, toolset, convs: list[Conversation]) -> Features:
    """The frozen pass over ``convs``, as the suite caches it (without writing the cache)."""
    from toolken_agent.chat_format import ChatFormat
    from toolken_agent.features import extract_features

    fmt = ChatFormat(lm.tokenizer, toolset.names, lm.vocab_size)
    return extract_features(lm, [fmt.render(c.messages, train=True) for c in convs])


def _same_head(a: ToolkenHead, b: ToolkenHead) -> bool:
    """Same weights, biases, priors, mix and gate presence, bit for bit."""
    return (all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
            and a.mix == b.mix and (a.gate is None) == (b.gate is None)
            and (a.gate is None or a.gate.threshold == b.gate.threshold))


@pytest.mark.parametrize("name", ["toolkengpt", "paper", "ours"])
def test_a_trained_method_is_toolkens_fit_with_the_methods_keywords(tiny_lm, small_toolset, name):
    from examples.benchmarks.suite import METHODS, fit
    from toolken_agent.toolkens import Toolkens
    from toolken_agent.training import LAMBDAS, TrainConfig

    method = next(m for m in METHODS if m.name == name)
    convs, check = _calls(12), _calls(4)
    feats = _features(tiny_lm, small_toolset, convs)
    check_feats = _features(tiny_lm, small_toolset, check)
    suite_toolkens, report = fit(tiny_lm, small_toolset, method, convs, feats, seed=1, epochs=2, check=check_feats)
    lam = method.lambda_ if method.lambda_ is not None else 0.01
    # The product's own path: fit runs the frozen pass itself.
    product, _ = Toolkens.fit(tiny_lm, small_toolset, convs, holdout=0.0, results=False,
                              config=TrainConfig(epochs=2, lambda_=lam, seed=1),
                              lambdas=LAMBDAS if method.lambda_ is None else None,
                              check=check if method.check else (), **method.fit)
    assert _same_head(suite_toolkens.head, product.head)
    assert report.lambda_ == product.lambda_
    assert (suite_toolkens.gate is not None) == (name == "ours")  # only ours fits the call gate


def test_zero_shot_is_the_untrained_binding_chat_toolken_uses(tiny_lm, small_toolset):
    from examples.benchmarks.suite import METHODS, fit
    from toolken_agent.toolkens import Toolkens

    zero = next(m for m in METHODS if m.name == "zero-shot")
    convs = _calls(2)
    toolkens, report = fit(tiny_lm, small_toolset, zero, convs, _features(tiny_lm, small_toolset, convs), seed=0)
    assert report is None and not zero.trained
    assert _same_head(toolkens.head, Toolkens.bind(tiny_lm, small_toolset).head)


def test_fit_given_the_frozen_pass_trains_the_head_fit_gets_by_running_it(tiny_lm, small_toolset):
    from toolken_agent.toolkens import Toolkens
    from toolken_agent.training import TrainConfig

    convs = _calls(12)
    feats = _features(tiny_lm, small_toolset, convs)
    kwargs = dict(holdout=0.0, results=False, config=TrainConfig(epochs=2), negatives=False)
    given, report = Toolkens.fit(tiny_lm, small_toolset, convs, features=feats, reword=False, **kwargs)
    run, _ = Toolkens.fit(tiny_lm, small_toolset, convs, reword=False, **kwargs)
    assert _same_head(given.head, run.head) and report.tokens == 0  # the LM never ran
    assert given.demos == run.demos  # argument-mode demos come from the conversations either way
    given, report = Toolkens.fit(tiny_lm, small_toolset, convs, features=feats, **kwargs)
    run, _ = Toolkens.fit(tiny_lm, small_toolset, convs, **kwargs)
    assert _same_head(given.head, run.head)  # the reworded twins: run over either way, the only pass
    assert report.reworded_added == len(convs) and 0 < report.tokens


def test_fit_refuses_a_frozen_pass_that_cannot_be_the_conversations(tiny_lm, small_toolset):
    from toolken_agent.toolkens import Toolkens

    convs = _calls(4)
    feats = _features(tiny_lm, small_toolset, convs)
    with pytest.raises(ValueError, match="result turns"):
        Toolkens.fit(tiny_lm, small_toolset, convs, features=feats)  # results=True would change them
    with pytest.raises(ValueError, match="one per conversation"):
        Toolkens.fit(tiny_lm, small_toolset, convs[:3], features=feats, results=False)


def test_ours_starts_where_the_zero_shot_calibration_puts_it_so_mix_0_keeps_that_bias(tiny_lm, small_toolset):
    from examples.benchmarks.suite import METHODS, fit
    from toolken_agent.toolkens import Toolkens

    ours = next(m for m in METHODS if m.name == "ours")
    convs = _calls(4)
    toolkens, _ = fit(tiny_lm, small_toolset, ours, convs, _features(tiny_lm, small_toolset, convs),
                      seed=0, epochs=1)
    start = Toolkens.from_priors(tiny_lm, small_toolset, calibrate=True).head
    assert ours.check and start.bias.abs().sum() > 0
    assert torch.equal(toolkens.head.prior_bias, start.bias.detach())  # mix 0 is the calibrated prior head, bias included


@pytest.mark.parametrize("name", ["toolkengpt+check", "paper+check"])
def test_a_baseline_given_the_check_questions_trains_on_them_as_data(tiny_lm, small_toolset, name):
    from examples.benchmarks.suite import METHODS, fit
    from toolken_agent.toolkens import Toolkens
    from toolken_agent.training import TrainConfig

    method = next(m for m in METHODS if m.name == name)
    convs, check = _calls(12), _calls(4)
    feats = _features(tiny_lm, small_toolset, convs)
    check_feats = _features(tiny_lm, small_toolset, check)
    suite_toolkens, report = fit(tiny_lm, small_toolset, method, convs, feats, seed=1, epochs=2, check=check_feats,
                                 check_conversations=check)
    product, _ = Toolkens.fit(tiny_lm, small_toolset, [*convs, *check], holdout=0.0, results=False,
                              config=TrainConfig(epochs=2, lambda_=method.lambda_, seed=1), lambdas=None, **method.fit)
    # One frozen pass over all 16 against two passes (12, then 4): the same rows up to float noise.
    got, want = suite_toolkens.head.state_dict(), product.head.state_dict()
    assert got.keys() == want.keys() and all(torch.allclose(got[k], want[k], atol=1e-4) for k in got)
    assert report.examples == len(convs) + len(check) and suite_toolkens.head.mix == 1.0
    with pytest.raises(ValueError, match="needs the check questions"):
        fit(tiny_lm, small_toolset, method, convs, feats, seed=1, epochs=2)


def test_a_run_can_take_a_subset_of_the_methods_and_refuses_an_unknown_one(capsys):
    from examples.benchmarks.run import QUICK, Plan, main

    plan = Plan(**{**QUICK.__dict__, "methods": ("ours", "zero-shot")})
    assert [m.name for m in plan.chosen()] == ["zero-shot", "ours"]  # the suite's order
    assert len(QUICK.chosen()) > 2
    with pytest.raises(SystemExit):
        main(["--methods", "ours,bogus"])
    assert "unknown method(s) bogus" in capsys.readouterr().err


def test_the_report_of_a_run_of_some_methods_leaves_out_what_it_did_not_run():
    from examples.benchmarks.report import scarcity_table

    curve = {"ours": {"1": {"mean": 0.4, "min": 0.3, "max": 0.5, "lambdas": [0.0]}}}
    only_ours = {"datasets": {"kamel-30": {"methods": {"ours": {"select": {"mean": 0.8}}}, "scarcity": curve}}}
    lines = scarcity_table(only_ours)
    assert any(line.startswith("| ours | 0.400") for line in lines) and not any("zero-shot" in line for line in lines)
    with_zero = {"datasets": {"kamel-30": {"methods": {"zero-shot": {"select": {"mean": 0.47}}}, "scarcity": curve}}}
    assert any("zero-shot, no data: 0.470" in line for line in scarcity_table(with_zero))
