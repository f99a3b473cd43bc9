"""The benchmark converters (examples/benchmarks/datasets.py): every set loads, counts match.

The data sets are read-only files outside the repository (``$TOOLKEN_BENCH_DATA`` or
``shared/data`` beside it); tests that need them are skipped when they are missing.
No language model is involved.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.benchmarks import datasets as D  # noqa: E402
from toolken_agent.data import load_jsonl  # noqa: E402

DATA = D.default_data_dir()
AVAILABLE = set(D.available(DATA)) if DATA.is_dir() else set()
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHECKED = ["funcqa-oh", "funcqa-mh", "gsm8k-xl", "kamel-30", "kamel-234", "vh", "vh-58"]

_CACHE: dict[str, D.BenchSet] = {}


def bench(name: str) -> D.BenchSet:
    if name not in AVAILABLE:
        pytest.skip(f"benchmark data for {name} not found under {DATA}")
    if name not in _CACHE:
        _CACHE[name] = D.load(name, DATA)
    return _CACHE[name]


def calls_of(record: dict) -> list[tuple[str, dict]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"]))
            for m in record["messages"] for c in (m.get("tool_calls") or [])]


def user_of(record: dict) -> str:
    return next(m["content"] for m in record["messages"] if m["role"] == "user")


def norm(text: str) -> str:
    return " ".join(text.lower().split())


def digest(b: D.BenchSet) -> str:
    blob = json.dumps([b.name, b.tools_json(), b.train, b.test], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------- no data needed


def test_call_notation_is_parsed_not_evaluated():
    assert D.parse_call_notation("<remainder>(5572,3241)=2331<eoe>") == ("remainder", [5572, 3241], 2331)
    assert D.parse_call_notation("<add>(2, 1) = 55<eoe>") == ("add", [2, 1], 55)
    assert D.parse_call_notation("<power>(2, 9/5)=3.48<eoe>") == ("power", [2, 1.8], 3.48)
    assert D.parse_call_notation("-<log>(0.00008342)=4.0787") == ("log", [0.00008342], -4.0787)
    assert D.parse_call_notation("<divide>(12,12.56))=0.9554") == ("divide", [12, 12.56], 0.9554)
    for bad in ["<permutate>(10,10-3)=604800", "<multiply>(12*2.0933)=25.12", "<add>(__import__('os'))=1", "add(1,2)=3"]:
        with pytest.raises(D.CallError):
            D.parse_call_notation(bad)


def test_numbers_are_int_when_integral():
    assert D.parse_number("18.0") == 18 and isinstance(D.parse_number("18.0"), int)
    assert D.parse_number(".5") == 0.5 and D.parse_number("5.") == 5
    assert D.fmt_number(32040.0) == "32040" and D.fmt_number(8.342e-05) == "0.00008342"


def test_math_arguments_follow_the_tools():
    assert D.math_args("add", [1, 2, 3]) == {"numbers": [1, 2, 3]}
    assert D.math_args("subtract", [5, 2]) == {"a": 5, "b": 2}
    assert D.math_args("power", [2, 8]) == {"base": 2, "exponent": 8}
    assert D.math_args("log", [8, 2]) == {"x": 8, "base": 2} and D.math_args("log", [100]) == {"x": 100}
    assert D.math_args("choose", [5, 2]) == {"n": 5, "k": 2}
    for op, values in [("gcd", [264]), ("divide", [1, 2, 3]), ("sqrt", [1, 2]), ("modulo", [1, 2])]:
        with pytest.raises(D.CallError):
            D.math_args(op, values)


def test_gsm8k_annotations_map_to_calls():
    assert D.gsm8k_call("48/2=24")[:3] == ("divide", {"a": 48, "b": 2}, 24)
    assert D.gsm8k_call("0.2*50=10")[:3] == ("multiply", {"numbers": [0.2, 50]}, 10)
    assert D.gsm8k_call("100 - 50=50")[:3] == ("subtract", {"a": 100, "b": 50}, 50)
    assert D.gsm8k_call("12+6+20=38")[:3] == ("add", {"numbers": [12, 6, 20]}, 38)
    for bad in ["24*(3/4)=18", "20/2-3=7", "26=26", "100-50-30-15=5"]:
        with pytest.raises(D.CallError):
            D.gsm8k_call(bad)
    with pytest.raises(D.CallError):
        D.gsm8k_call("12+6+20=38", nary=False)


def test_data_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLKEN_BENCH_DATA", str(tmp_path))
    assert D.default_data_dir() == tmp_path
    monkeypatch.delenv("TOOLKEN_BENCH_DATA")
    assert D.default_data_dir() == ROOT.parent / "shared" / "data"
    assert D.available(tmp_path) == []
    with pytest.raises(ValueError):
        D.load("no-such-benchmark", tmp_path)


# ---------------------------------------------------------------- every set


@pytest.fixture
def schema_checked_once(monkeypatch):
    """``jsonschema.validate`` as is, except that each schema is checked once, not per call.

    ``ToolSpec.validate`` calls ``jsonschema.validate``, which re-checks the schema against
    its metaschema every time: 90% of loading KAMEL-234's 7,000 records. The instances are
    validated exactly as before (same validator class, same best-match error).
    """
    real = jsonschema.validate
    validators: dict[str, object] = {}

    def validate(instance, schema, *args, **kwargs):
        if args or kwargs:
            return real(instance, schema, *args, **kwargs)
        key = json.dumps(schema, sort_keys=True, default=str)
        if key not in validators:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            validators[key] = cls(schema)
        error = jsonschema.exceptions.best_match(validators[key].iter_errors(instance))
        if error is not None:
            raise error

    monkeypatch.setattr(jsonschema, "validate", validate)


@pytest.mark.parametrize("name", CHECKED)
def test_records_load_with_load_jsonl(name, tmp_path, schema_checked_once):
    b = bench(name)
    assert b.train and b.test
    for split, records in (("train", b.train), ("test", b.test)):
        path = tmp_path / f"{split}.jsonl"
        assert D.write_jsonl(records, path) == len(records)
        report = load_jsonl(path, b.toolset)  # strict: any bad line raises
        assert len(report.conversations) == len(records)
        if split == "test":
            answers = [c.meta.get("answer") for c in report.conversations]
            assert all(a is not None for a in answers), "every test record carries its gold answer"


def test_schema_checked_once_still_refuses_bad_arguments(tmp_path, schema_checked_once):
    b = D.BenchSet("t", D._vh_toolset(["computer", "chair"], "steps"), [], [])
    good = {"messages": [{"role": "user", "content": "Work."}, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "walk", "arguments": '{"object": "computer"}'}}]}]}
    bad = json.loads(json.dumps(good).replace("computer", "sofa"))
    D.write_jsonl([good], tmp_path / "good.jsonl")
    D.write_jsonl([bad], tmp_path / "bad.jsonl")
    assert len(load_jsonl(tmp_path / "good.jsonl", b.toolset).conversations) == 1
    with pytest.raises(Exception, match="schema"):
        load_jsonl(tmp_path / "bad.jsonl", b.toolset)


@pytest.mark.parametrize("name", CHECKED)
def test_tools_and_calls_fit_the_schemas(name):
    b = bench(name)
    names = b.toolset.names
    assert len(set(names)) == len(names)
    for spec in b.toolset:
        assert NAME_RE.match(spec.name) and spec.description.strip()
        assert spec.parameters.get("type") == "object"
    validators = {s.name: jsonschema.Draft202012Validator(dict(s.parameters)) for s in b.toolset}
    for record in b.train + b.test:
        for tool, args in calls_of(record):
            validators[tool].validate(args)
            if b.toolset.get(tool).args_model is not None:  # the math tools: pydantic too
                b.toolset.get(tool).validate(args)
        for m in record["messages"]:
            text = m.get("content") or ""
            assert not re.search(r"<eoe>|<<|>>|</?[A-Za-z]+>", text), (name, text)
        assert record["messages"][0]["role"] == "user" and any(m["role"] == "assistant" for m in record["messages"])


@pytest.mark.parametrize("name", CHECKED)
def test_no_test_question_in_train(name):
    b = bench(name)
    test_questions = {norm(user_of(r)) for r in b.test}
    assert not [r for r in b.train if norm(user_of(r)) in test_questions]


@pytest.mark.parametrize("name", ["funcqa-oh", "vh", "kamel-30"])
def test_loading_is_deterministic(name):
    first = bench(name)
    assert digest(D.load(name, DATA)) == digest(first)


def test_deterministic_across_processes():
    """Set and hash ordering must not leak in: another process, another hash seed, same output."""
    names = [n for n in ("kamel-234", "vh-58") if n in AVAILABLE]  # the ones that use sets
    if not names:
        pytest.skip("no benchmark data")
    code = (
        "import sys, json, hashlib; sys.path.insert(0, sys.argv[1]);"
        "from examples.benchmarks import datasets as D;"
        "print(json.dumps({n: hashlib.sha256(json.dumps([b.name, b.tools_json(), b.train, b.test], sort_keys=True,"
        " ensure_ascii=False).encode()).hexdigest() for n in sys.argv[3:] for b in [D.load(n, D.Path(sys.argv[2]))]}))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(DATA), *names], check=True, capture_output=True,
                         text=True, env={"PYTHONHASHSEED": "12345", "PATH": ""}, timeout=120).stdout
    assert json.loads(out) == {n: digest(bench(n)) for n in names}


# ---------------------------------------------------------------- FuncQA


def test_funcqa_counts_and_gold_calls():
    oh, mh = bench("funcqa-oh"), bench("funcqa-mh")
    src = DATA / "funcqa"
    raw_oh = json.loads((src / "funcqa_oh.json").read_text())
    raw_mh = json.loads((src / "funcqa_mh.json").read_text())
    assert len(oh.test) == len(raw_oh) == 60 and len(mh.test) == len(raw_mh) == 68
    assert oh.toolset.names == ["add", "subtract", "multiply", "divide", "power", "sqrt", "log", "ln", "lcm", "gcd",
                                "remainder", "choose", "permutate"]
    # one-hop: exactly the gold call's tool, named like FuncQA's func
    for record, raw in zip(oh.test, raw_oh):
        ((tool, _),) = calls_of(record)
        assert raw["func"].lstrip("-").startswith(f"<{tool}>")
        assert record["answer"] == pytest.approx(float(raw["answer"]))
    # multi-hop: the chain in order; only the marked records lost steps
    for record, raw in zip(mh.test, raw_mh):
        tools = [t for t, _ in calls_of(record)]
        written = [re.match(r"-?<(\w+)>", step).group(1) for step in raw["calculation"]]
        if record.get("gold_calls_complete", True):
            assert tools == written
        else:
            assert len(tools) < len(written)
    assert mh.stats["test_records_incomplete_gold"] == sum(1 for r in mh.test if "gold_calls_complete" in r) == 2
    # train: shared, and every record accounted for
    assert oh.train == mh.train
    raw_train = json.loads((src / "train.json").read_text())
    skipped = sum(v for k, v in oh.stats.items() if k.startswith("train_skipped"))
    assert len(oh.train) + skipped == len(raw_train)


def test_funcqa_train_calls_first_and_answers_with_the_tools_result():
    b = bench("funcqa-oh")
    for record in b.train:
        messages = record["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
        assert not messages[1]["content"], record["source"]  # the call opens the reply, as at test time
        ((tool, args),) = calls_of(record)
        value = D.run_tool(b.toolset.get(tool), args)
        written = D.parse_number(messages[2]["content"])
        assert D._agrees(value, written), (record["source"], value, written)
        # the answer text holds the result it was given, and no call notation
        answer = messages[3]["content"]
        assert re.search(r"(?<![\d.])" + re.escape(messages[2]["content"]) + r"(?![\d])", answer), record["source"]
        assert "<eoe>" not in answer and not re.search(r"<\w+>\(", answer), record["source"]


# ---------------------------------------------------------------- GSM8K-XL


def test_gsm8k_xl_counts_and_placeholders():
    b = bench("gsm8k-xl")
    raw_test = [json.loads(line) for line in (DATA / "gsm8k-xl" / "test.json").read_text().splitlines() if line.strip()]
    assert len(b.test) == len(raw_test) == 568
    assert b.toolset.names == ["add", "subtract", "multiply", "divide"]
    for record, raw in zip(b.test, raw_test):
        assert "{v_" not in user_of(record)
        assert record["answer"] == pytest.approx(raw["enhanced_result"])
        assert [m["role"] for m in record["messages"]] == ["user", "assistant"] and not calls_of(record)
    assert "4096 eggs" in user_of(b.test[0]) and b.test[0]["answer"] == 32040
    n_train = sum(1 for line in (DATA / "gsm8k-xl" / "gsm8k_original" / "train.jsonl").open() if line.strip())
    assert len(b.train) + b.stats["train_skipped_no_annotation"] + b.stats["train_skipped_unmappable_annotation"] == n_train
    for record in b.train[:500]:
        assert record["messages"][-1]["content"].endswith(f"The answer is {D.fmt_number(record['answer'])}.")
        for m in record["messages"]:
            if m["role"] == "tool":
                D.parse_number(m["content"])


# ---------------------------------------------------------------- KAMEL


@pytest.mark.parametrize("n", [10, 30, 234])
def test_kamel_tools_are_the_first_n_relations(n):
    b = bench(f"kamel-{n}")
    api = json.loads((DATA / "kamel" / "api_desc.json").read_text())
    pids = list(api)[:n]
    assert len(b.toolset) == n == b.stats["tools"]
    for pid, spec in zip(pids, b.toolset):
        human = api[pid].split("(")[0]
        assert spec.name in (human, f"{human}_{pid.lower()}")
        assert spec.description == api[pid].split(":", 1)[1].strip()
        (arg,) = spec.parameters["properties"]
        assert spec.parameters["required"] == [arg]
    raw_test = json.loads((DATA / "kamel" / f"test_first_{n}.json").read_text())
    assert len(b.test) == len(raw_test) == 500
    name_of = dict(zip(pids, b.toolset.names))
    for record, raw in zip(b.test, raw_test):
        ((tool, args),) = calls_of(record)
        assert tool == name_of[raw["api"]]
        (subject,) = args.values()
        assert subject.strip() and subject in raw["question"]
        assert record["answer"] in record["answers"]


def test_kamel_names_are_unique_and_stable_across_sizes():
    small, big = bench("kamel-30"), bench("kamel-234")
    assert big.toolset.names[:30] == small.toolset.names
    assert {"location_p17", "location_p276", "location_p706"} <= set(big.toolset.names)
    assert "location" not in big.toolset.names


def test_kamel_subjects_are_recovered():
    finder = D._kamel_subject_finder(str(DATA / "kamel")) if "kamel-234" in AVAILABLE else pytest.skip("no KAMEL")
    cases = {
        ("P1408", "What places is KSAS-FM broadcasted to?"): "KSAS-FM",
        ("P7937", "What form does the creative work The Haunted Manor has?"): "The Haunted Manor",
        ("P5353", "What school district does Hidalgo High School belong to?"): "Hidalgo High School",
        ("P81", "What line connects Sannohe Station?"): "Sannohe Station",
        ("P22", "Who is the father of Thomas Bromley, 2nd Baron Montfort?"): "Thomas Bromley, 2nd Baron Montfort",
        ("P141", "What is the IUCN conservation status of Mindanao Brown Dove?"): "Mindanao Brown Dove",
    }
    for (pid, question), subject in cases.items():
        assert finder.find(pid, question)[0] == subject


def test_kamel_train_is_restricted_to_the_first_n_relations():
    b = bench("kamel-30")
    names = set(b.toolset.names)
    for record in b.train:
        messages = record["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
        ((tool, args),) = calls_of(record)
        assert tool in names and all(v.strip() for v in args.values())
        assert messages[2]["content"] in messages[3]["content"]  # the reply states the value
    questions_only = D.load_kamel(DATA, 30, narratives=False)
    assert all(user_of(r).endswith("?") for r in questions_only.train)
    assert len(questions_only.train) == b.stats["train_question"]


# ---------------------------------------------------------------- VirtualHome


def test_vh_split_and_steps():
    b = bench("vh")
    raw = json.loads((DATA / "vh" / "legal_train_v4_embedding.json").read_text())
    assert len(b.test) == round(0.2 * len(raw)) == 49
    assert len(b.train) + len(b.test) == len(raw) + 3  # the three few-shot tasks train too
    assert len(b.toolset) == 25 and "walk" in b.toolset.names
    for record in b.train + b.test:
        steps = calls_of(record)
        plan = record["answer"].splitlines()
        assert plan[-1] == "[END]" and len(steps) == len(plan) - 1
        for (tool, args), line in zip(steps, plan):
            action, obj = line.split()
            assert D.VH_ACTIONS[action][0] == tool and f"<{args['object']}>" == obj
            assert args["object"] in record["objects"]  # every gold step is executable in its scene
    other = D.load_vh(DATA, heldout=0.2, seed=1)
    assert {user_of(r) for r in other.test} != {user_of(r) for r in b.test}
    assert len(D.load_vh(DATA, heldout=0.5).test) == round(0.5 * len(raw))
    assert D.vh_allowed_pairs(b)


def test_vh_58_toolkens():
    b, steps = bench("vh-58"), bench("vh")
    func_dict = json.loads((DATA / "vh" / "func_dict.json").read_text())
    assert len(b.toolset) == len(func_dict) == 58
    assert b.toolset.names[-1] == "end" and b.toolset.names[25:57] == [t[1:-1] for t in func_dict if t.startswith("<")]
    for record, twin in zip(b.test, steps.test):
        tools = [t for t, _ in calls_of(record)]
        assert tools[-1] == "end" and len(tools) == 2 * len(calls_of(twin)) + 1
        assert record["answer"] == twin["answer"]


# ---------------------------------------------------------------- command line


def test_cli_writes_jsonl_and_tools(tmp_path):
    names = [n for n in ("funcqa-oh", "vh") if n in AVAILABLE]
    if not names:
        pytest.skip("no benchmark data")
    assert D.main(["--out", str(tmp_path), "--data", str(DATA), "--only", *names]) == 0
    for name in names:
        folder = tmp_path / name
        tools = json.loads((folder / "tools.json").read_text())
        assert [t["function"]["name"] for t in tools] == bench(name).toolset.names
        assert json.loads((folder / "stats.json").read_text())["test"] == len(bench(name).test)
        lines = (folder / "test.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in lines] == bench(name).test
    assert D.main(["--out", str(tmp_path), "--data", str(tmp_path / "nothing")]) == 1


def test_kamel_check_questions_are_real_spare_ones_within_the_first_n_relations():
    test = bench("kamel-30").test[:200]
    asked = {user_of(r) for r in test}
    check = D.kamel_check(DATA, 30, exclude=asked, per_tool=2)
    names = set(bench("kamel-30").toolset.names)
    per_tool: dict[str, int] = {}
    for record in check:
        ((tool, args),) = calls_of(record)
        assert tool in names and user_of(record) not in asked and record["answer"] in record["answers"]
        per_tool[tool] = per_tool.get(tool, 0) + 1
    assert set(per_tool) == names and max(per_tool.values()) == 2  # every relation asked about elsewhere too
    assert len({user_of(r) for r in check}) == len(check)
    assert D.kamel_check(DATA, 30, exclude=asked, per_tool=2) == check  # seeded
