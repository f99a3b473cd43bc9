"""The ``toolken-agent`` command line.

Every user mistake is one line on stderr and a non-zero exit (2 for bad input, 130
for Ctrl-C); tracebacks are for bugs only. Everything user-supplied that is printed
(paths, tool names and descriptions, model names) is escaped: Rich reads ``[/x]`` as
markup and raised MarkupError on it. Machine-readable lines (``train``'s and ``eval``'s
last JSON line) are alone on stdout: what tools print goes to stderr.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .console import (DtypeOption, EngineOption, ModelOption, ToolsOption, TrustOption, err, load_trained, out, tool_prints_to_stderr,
                      toolkens_option, user_errors)
from .defaults import FIT, PRIOR_KINDS
from .errors import ToolkenError

if TYPE_CHECKING:
    from .training import TrainingInterrupted

app = typer.Typer(
    name="toolken-agent",
    help="Tool calling for frozen language models through learned toolkens.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Prior = Enum("Prior", {kind: kind for kind in PRIOR_KINDS}, type=str)  # typer shows and checks the choices


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from . import __version__

        try:
            number = version("toolken-agent")
        except PackageNotFoundError:  # run from a source tree that is not installed
            number = __version__
        print(f"toolken-agent {number}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Tool calling for frozen language models through learned toolkens."""


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False,
    )


class PhaseBars:
    """A progress bar per phase of :meth:`Toolkens.fit` that has a total (:class:`~toolken_agent.toolkens.FitProgress`).

    Every bar knows its total from the start (tokens, epochs, requests); a phase with
    nothing to count (the call gate, result turns) is timed but drawn as no bar. A
    phase that ends short of its total keeps what it did as its total.
    """

    UNITS = {"no-tool requests": "requests", "caching": "tokens", "lambda sweep": "epochs", "training": "epochs",
             "check requests": "tokens", "mix": "epochs"}
    LABELS = {"no-tool requests": "reading the no-tool requests", "caching": "caching frozen features",
              "lambda sweep": "choosing lambda", "training": "training toolkens",
              "check requests": "caching the check requests", "mix": "choosing the tool-choice mix"}

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def start(self, phase: str, total: int) -> None:
        if total > 0:
            self.tasks[phase] = self.progress.add_task(self.LABELS.get(phase, phase), total=total,
                                                       info=self.UNITS.get(phase, ""))

    def advance(self, phase: str, n: int = 1, info: str = "") -> None:
        if phase in self.tasks:
            self.progress.update(self.tasks[phase], advance=n, **({"info": info} if info else {}))

    def end(self, phase: str) -> None:
        task = self.tasks.pop(phase, None)
        if task is not None:
            done = self.progress.tasks[self.progress.task_ids.index(task)].completed
            self.progress.update(task, total=done, completed=done)


def _slug(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(ref).stem if ref.endswith(".py") else ref).strip("-") or "toolset"


@app.command()
def tools(ref: Annotated[str, typer.Argument(help="A .py file, a module path, or a registered toolset name.")],
          as_json: Annotated[bool, typer.Option("--json", help="Print the tools as one JSON list (name, description, "
                                                                "parameters as JSON schema, read_only, examples) for scripts.")] = False,
          ) -> None:
    """List the tools of a toolset with their descriptions and arguments."""
    from .toolset import load_toolset

    with user_errors(), tool_prints_to_stderr() as stdout:
        toolset = load_toolset(ref)
    if as_json:
        listing = [{"name": s.name, "description": s.description, "parameters": dict(s.parameters), "read_only": s.read_only,
                    "examples": [{"prompt": e.prompt, "args": dict(e.args)} for e in s.examples]} for s in toolset]
        print(json.dumps(listing, ensure_ascii=False, default=str), file=stdout)
        return
    table = Table(title=f"{len(toolset)} tools from {escape(ref)}")
    for column in ("tool", "description", "arguments", "examples"):
        table.add_column(column)
    for spec in toolset:
        props = spec.parameters.get("properties", {})
        required = set(spec.parameters.get("required", []))
        args = ", ".join(f"{k}: {v.get('type', 'any') if isinstance(v, dict) else 'any'}{'' if k in required else '?'}"
                         for k, v in props.items())
        table.add_row(escape(spec.name), escape(spec.description), escape(args), str(len(spec.examples)))
    out.print(table)


@app.command()
def train(
    tools_ref: ToolsOption,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="OpenAI chat-format JSONL; default: the tools' own examples.")] = None,
    model: ModelOption = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Checkpoint directory (default: toolkens-<toolset>).")] = None,
    epochs: Annotated[int, typer.Option(min=0, help="Passes over the cached features.")] = FIT.epochs,
    prior: Annotated[Prior, typer.Option(help="Where each toolken's row starts (toolken_agent/priors.py).")] = Prior(FIT.prior),
    lambda_: Annotated[str, typer.Option("--lambda", help=f"Weight of ||W - W_prior||, or auto: trained once per candidate ({', '.join(f'{v:g}' for v in FIT.lambdas)}) on 80% of the training share, chosen on the rest.")] = "auto",
    lr: Annotated[float, typer.Option(min=0.0, help="Adam learning rate.")] = FIT.lr,
    bias: Annotated[bool, typer.Option("--bias/--no-bias", help="Learn a firing bias per toolken.")] = FIT.bias,
    calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate", help="Start each bias where zero-shot toolkens have it: quiet on requests that need no tool.")] = FIT.calibrate,
    holdout: Annotated[float, typer.Option(min=0.0, max=0.9, help="Share of conversations held out for accuracy.")] = FIT.holdout,
    built_in_negatives: Annotated[bool, typer.Option("--built-in-negatives/--no-built-in-negatives", help="Add 16 requests that need no tool when the data holds none, so toolkens learn when not to fire.")] = FIT.negatives,
    call_false_positives: Annotated[float, typer.Option("--call-false-positives", min=0.0, max=1.0, help="Share of held-out no-call decisions the whether-to-call gate may fire on; its threshold is chosen for it (chat --call-threshold moves it later).")] = FIT.call_false_positives,
    call_reach_miss: Annotated[float, typer.Option("--call-reach-miss", min=0.0, max=1.0, help="Share of held-out calls the gate's radius around the training calls may leave out; requests beyond it never call. No radius with too few held-out calls (19 at 0.05); 0 turns it off.")] = FIT.call_reach_miss,
    result_turns: Annotated[bool, typer.Option("--result-turns/--no-result-turns", help="Give every call without a result a result turn and a reply in words, so toolkens learn to answer after results (read-only tools are run; others get a placeholder).")] = FIT.results,
    reword: Annotated[bool, typer.Option("--reword/--no-reword", help="Train on a reworded twin of each training request too (a greeting or thanks around it; another text where it quotes a call's text), so the choice follows what is asked, not how.")] = FIT.reword,
    check: Annotated[Optional[Path], typer.Option("--check", help="A few real requests with their calls (JSONL, as --data), when the training data is synthetic: they join the training data, and the call gate's radius around the training calls is set on them.")] = None,
    lenient: Annotated[bool, typer.Option(help="Skip bad data lines (counted) instead of stopping.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split, the shuffling and the random prior.")] = FIT.seed,
    dtype: DtypeOption = "auto",
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1, or auto to spread a large model over all GPUs (default: this process's GPU if any, else cpu).")] = None,
) -> None:
    """Train toolkens for a toolset and save them as a checkpoint directory.

    Under `accelerate launch` or `torchrun` the caching pass is shared among the processes;
    the checkpoint is the one a single process writes, written by the main process only.
    """
    from .augment import example_conversations, needs_built_in_negatives
    from .data import NEGATIVE_EXAMPLES, count_calls, load_jsonl
    from .model import load_model
    from .parallel import current_shard
    from .toolkens import Toolkens
    from .toolset import load_toolset
    from .training import LAMBDAS, TrainConfig, TrainingInterrupted

    out_dir = out_dir or Path(f"toolkens-{_slug(tools_ref)}")
    main = current_shard().is_main
    if not main:  # the other processes only share the caching pass
        out.quiet = err.quiet = True
    with user_errors(f"interrupted: nothing saved, {out_dir} unchanged"), tool_prints_to_stderr():
        _check_out(out_dir)
        prior_kind = Prior(prior).value
        lambdas, lambda_value = _parse_lambda(lambda_, LAMBDAS)
        toolset = load_toolset(tools_ref)
        err.print(f"toolset [bold]{escape(tools_ref)}[/bold]: {len(toolset)} tools ({escape(', '.join(toolset.names))})",
                  highlight=False)
        if data is not None:
            loaded = load_jsonl(data, toolset, lenient=lenient)
            conversations = loaded.conversations
            if loaded.skipped:
                err.print(f"skipped {loaded.skipped} bad lines of {loaded.lines} in {data}; first: {loaded.first_errors[0]}",
                          highlight=False, markup=False, soft_wrap=True)
            origin = str(data)
        else:
            conversations = example_conversations(toolset, with_negatives=False)
            origin = "the tools' examples"
        check_convs = load_jsonl(check, toolset, lenient=lenient).conversations if check is not None else []
        if check is not None and count_calls(check_convs) == 0:
            raise ToolkenError(f"{check} holds no tool call to choose the call gate's radius on (check requests are calls)")
        added = len(NEGATIVE_EXAMPLES) if built_in_negatives and needs_built_in_negatives(conversations) else 0  # fit adds them
        config = TrainConfig(epochs=epochs, lr=lr, lambda_=lambda_value, seed=seed)
        start = time.perf_counter()
        lm = load_model(model, dtype=getattr(dtype, "value", dtype), device=device, engine="transformers")  # training features: transformers
        model_seconds = time.perf_counter() - start
        err.print(f"model [bold]{escape(lm.name)}[/bold] ({lm.precision}, loaded in {model_seconds:.1f} s)", highlight=False)
        if not conversations:
            toolkens = Toolkens.from_priors(lm, toolset, prior=prior_kind, bias=bias, seed=seed, lambda_=lambda_value, calibrate=calibrate)
            if not main:
                return
            saved = save_or_rescue(toolkens, out_dir)
            out.print(f"No training data (no --data and no examples on the tools): saved the {prior_kind} priors alone, "
                      f"untrained, to {saved}", highlight=False, markup=False)
            return
        err.print(f"data: {len(conversations)} conversations from {origin}, {count_calls(conversations)} tool calls"
                  + (f"; +{added} built-in requests that need no tool" if added else ""), highlight=False, markup=False)
        with _progress() as progress:
            try:
                toolkens, report = Toolkens.fit(lm, toolset, conversations, prior=prior_kind, bias=bias, calibrate=calibrate,
                                                lambdas=lambdas, config=config, holdout=holdout, negatives=built_in_negatives,
                                                results=result_turns, reword=reword,
                                                call_false_positives=call_false_positives,
                                                call_reach_miss=call_reach_miss or None, check=check_convs, progress=PhaseBars(progress))
            except TrainingInterrupted as exc:
                progress.stop()
                if main:
                    save_interrupted(exc, out_dir)
                raise typer.Exit(130) from None
        if not main:
            return
        saving = time.perf_counter()
        saved = save_or_rescue(toolkens, out_dir)
        phases = {"model": model_seconds, **report.phase_seconds, "saving": time.perf_counter() - saving}
    _print_fit(report, saved, phases, time.perf_counter() - start)


def _parse_lambda(text: str, candidates: tuple[float, ...]) -> tuple[tuple[float, ...] | None, float]:
    """``--lambda``: ``auto`` (candidates to choose among; TrainConfig's default when the data is too small to split) or a number."""
    from .training import TrainConfig

    if text.strip().lower() == "auto":
        return candidates, TrainConfig().lambda_
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise ToolkenError(f"--lambda must be auto or a number >= 0, not {text!r}")
    return None, value


def _check_out(out_dir: Path) -> None:
    """Refuse an unusable ``--out`` before any work; say where a symlink leads."""
    from .checkpoint import check_output

    target = check_output(out_dir)
    if out_dir.is_symlink():
        err.print(f"--out {out_dir} is a symlink: saving to where it points, {target}", highlight=False, markup=False,
                  soft_wrap=True)


def save_or_rescue(toolkens, out_dir: Path) -> Path:
    """Save to ``out_dir``; on a disk error, save to a new temporary directory and say so in the error.

    The training is not lost to a full disk or a read-only mount discovered only now.
    """
    import tempfile

    try:
        return toolkens.save(out_dir)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        try:
            rescued = toolkens.save(Path(tempfile.mkdtemp(prefix="toolken-agent-rescue-")) / out_dir.name)
        except OSError:
            raise ToolkenError(f"cannot save to {out_dir}: {reason} (nothing saved)") from None
        raise ToolkenError(f"cannot save to {out_dir}: {reason}; the toolkens were saved to {rescued} instead") from None


def save_interrupted(exc: TrainingInterrupted, out_dir: Path) -> None:
    """After Ctrl-C, save the last good state if training got that far, and say what was kept.

    Before the first epoch ends the toolkens are only the priors: saving them would
    replace a checkpoint trained earlier at ``out_dir`` with untrained rows, so nothing
    is written. A partial run never replaces a finished one: when ``out_dir`` holds a
    finished run, the partial one goes beside it, to ``<out_dir>.interrupted``.
    """
    from .checkpoint import holds_finished_run

    epochs = len(exc.result.epoch_losses)
    stage = getattr(exc, "stage", "training")
    if epochs == 0:
        when = "before the first epoch finished" if stage == "training" else f"while {stage}, before training"
        err.print(f"interrupted {when}: nothing saved, {out_dir} unchanged", highlight=False, markup=False, soft_wrap=True)
        return
    target = out_dir.with_name(f"{out_dir.name}.interrupted") if holds_finished_run(out_dir) else out_dir
    saved = save_or_rescue(exc.toolkens, target)  # type: ignore[attr-defined]
    kept = f"; {out_dir} holds a finished run and is unchanged" if target != out_dir else ""
    err.print(f"interrupted: saved the {epochs} finished epochs to {saved}{kept}", highlight=False, markup=False,
              soft_wrap=True)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _print_fit(report, out_dir: Path, phases: dict[str, float], seconds: float) -> None:
    figures = report.as_dict()
    out.print(
        f"trained {figures['epochs_done']} epochs on {report.positions} positions "
        f"({report.call_positions} calls) from {report.examples} conversations",
        highlight=False,
    )
    for split, rates in (("held-out", report.heldout), ("held-out (priors only)", report.prior_heldout)):
        for key, what in (("call_accuracy", "calls"), ("no_call_accuracy", "decisions without a call")):
            if rates and not _is_number(rates.get(key)):
                err.print(f"warning: the {split} split has no {what}: its {key} is null", style="yellow",
                          highlight=False, markup=False, soft_wrap=True)
    if report.lambda_sweep:
        out.print(f"lambda {report.lambda_:g}, chosen on a split of the training data (held-out decision accuracy: "
                  + ", ".join(f"{k}: {v:.2f}" for k, v in report.lambda_sweep.items()) + ")", highlight=False)
    if report.heldout:
        table = Table(title=f"held-out tool selection ({report.heldout_examples} conversations)")
        for column in ("", "accuracy", "calls right", "no-call right", "decisions"):
            table.add_column(column)
        for label, acc in (("priors only", report.prior_heldout), ("trained", report.heldout)):
            table.add_row(label, *(f"{acc[k]:.3f}" if _is_number(acc[k]) else "n/a" for k in
                                   ("accuracy", "call_accuracy", "no_call_accuracy")), str(acc["decisions"]))
        out.print(table)
    if report.check_examples:
        out.print(f"check: {report.check_examples} real requests joined the training data; the call gate's radius is "
                  "set on them, each against the other requests' calls", highlight=False)
    if report.reworded_added:
        out.print(f"reworded: {report.reworded_added} training requests got a reworded twin", highlight=False)
    if report.results_added:
        out.print(f"result turns: {report.results_added} conversations got a result and a reply after their calls",
                  highlight=False)
    if report.gate:
        g = report.gate
        out.print(f"call gate: threshold {g['threshold']:.3f} for at most {g['target_false_positives']:.0%} false positives "
                  f"({g['scored_on']}: calls {_rate(g['call_rate'])}, false positives {_rate(g['false_positive_rate'])})",
                  highlight=False)
    if report.mix_scores:
        out.print(f"tool-choice mix: {report.mix:g} (trained rows against description priors, cross-fitted on "
                  f"{report.check_examples} check requests)", highlight=False)
    if report.reach:
        r = report.reach
        out.print(f"call reach: radius {r['radius']:.2f} around {r['anchors']} training calls, at most {r['miss']:.0%} of "
                  f"{r['held_out_calls']} held-out calls outside it" if r["radius"] is not None
                  else f"call reach: none ({r['why_none']})", highlight=False, markup=False)
    if not report.heldout:
        out.print("no held-out accuracy: fewer than 10 conversations (or --holdout 0)", highlight=False)
    out.print(f"saved toolkens to {out_dir}", highlight=False, markup=False)
    out.print("time: " + ", ".join(f"{name} {t:.1f} s" for name, t in phases.items())
              + f"; total {seconds:.1f} s", highlight=False, markup=False, soft_wrap=True)
    # The figures as one JSON line last, unwrapped, for scripts; as_dict has no NaN, and allow_nan=False proves it.
    keep = ("heldout", "prior_heldout", "cache_seconds", "train_seconds", "lambda", "mix", "gate", "reach", "phase_seconds")
    print(json.dumps({k: v for k, v in figures.items() if k in keep}, allow_nan=False))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@app.command("eval")
def eval_command(
    toolkens_dir: Annotated[str, toolkens_option()],
    data: Annotated[Path, typer.Option("--data", "-d", help="OpenAI chat-format JSONL test conversations.")],
    tools_ref: Annotated[Optional[str], typer.Option("--tools", "-t", help="The toolset the checkpoint was trained for: a .py file, a module path, or a registered toolset name.")] = None,
    trust_toolset: TrustOption = False,
    model: ModelOption = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate the first N conversations only.")] = None,
    tool_bias: Annotated[float, typer.Option(help="Added to every toolken logit.")] = 0.0,
    max_tokens: Annotated[int, typer.Option(min=1, help="Text tokens per answer.")] = 96,
    lenient: Annotated[bool, typer.Option(help="Skip bad data lines (counted) instead of stopping.")] = False,
    dtype: DtypeOption = "auto",
    engine: EngineOption = None,
) -> None:
    """Decode held-out conversations: tool selection, argument exact match, answer accuracy."""
    from .data import load_jsonl
    from .decoding import DecodeConfig
    from .evaluation import evaluate

    with user_errors(), tool_prints_to_stderr():
        toolkens = load_trained(toolkens_dir, tools_ref, trust_toolset=trust_toolset, model=model, dtype=dtype, engine=engine)
        loaded = load_jsonl(data, toolkens.toolset, lenient=lenient)
        conversations = loaded.conversations[:limit] if limit else loaded.conversations
        config = DecodeConfig(max_new_tokens=max_tokens, tool_bias=tool_bias)
        with _progress() as progress:
            task = progress.add_task("evaluating", total=len(conversations), info="")
            report = evaluate(toolkens, conversations, config, on_example=lambda n: progress.advance(task))
    figures = report.as_dict()
    table = Table(title=f"{escape(str(data))} ({figures['examples']} conversations, {figures['call_turns']} with a gold call)")
    for column in ("metric", "value", "scored on"):
        table.add_column(column)
    for label, key, base in (("tool selection accuracy", "tool_selection_accuracy", figures["examples"]),
                             ("argument exact match", "argument_exact_match", report.args_scored),
                             ("answer accuracy", "answer_accuracy", figures["answers_scored"])):
        value = figures[key]
        table.add_row(label, "n/a" if value is None else f"{value:.3f}", str(base))
    out.print(table)
    if loaded.skipped:
        err.print(f"skipped {loaded.skipped} bad lines", highlight=False)
    print(json.dumps(figures))


from .repl import chat_command  # noqa: E402

app.command("chat")(chat_command)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C outside a command body
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
