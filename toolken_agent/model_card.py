"""The model card (``README.md``) written into every checkpoint.

A checkpoint on the Hub is found and judged by its card: which base model, which tools,
trained on how much, how well it chose tools on held-out data, and how to load it. The
card is built from the checkpoint's own config with huggingface_hub's
:class:`~huggingface_hub.ModelCard` (metadata ``library_name``, ``base_model``, ``tags``),
so the Hub reads the same fields it reads from any model. It is documentation: loading
never reads it, and the config's hashes do not cover it.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

LIBRARY_NAME = "toolken-agent"
TAGS = ["toolken-agent", "toolkens", "tool-calling"]

TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

Toolkens for **{{ model_name }}**: one learned output-embedding row per tool, so the frozen
model calls a tool by emitting its toolken (the `toolken-agent` library; ToolkenGPT with
prior re-initialization). Only the rows are here; the base model is not, and neither are
the tools: they are code, and a checkpoint never runs code.

## Base model

{{ base_model_text }}

Model fingerprint `{{ fingerprint }}` (hidden size {{ hidden_size }}): loading with another model is refused.

## Tools

| tool | description |
|---|---|
{% for name, description in tools %}| `{{ name }}` | {{ description }} |
{% endfor %}
{% if toolset %}Trained with the toolset `{{ toolset }}`.{% endif %}

## Training

{{ training_text }}

## Held-out tool selection

{{ heldout_text }}

## How to load

```python
from toolken_agent import Toolkens

toolkens = Toolkens.from_pretrained("{{ ref }}", tools={{ tools_arg }})
```

```bash
toolken-agent chat --toolkens {{ ref }} --tools {{ tools_cli }}
```

Pass the tools the checkpoint was trained for; a tool whose name, description or
arguments changed since is refused.
"""


def card_text(config: Any, descriptions: Mapping[str, str] | None = None, *, ref: str) -> str:
    """The card of a checkpoint with ``config`` (a :class:`~toolken_agent.checkpoint.ToolkenConfig`, read by
    attribute so this module need not import the one that writes it), loaded as ``ref`` (a directory or a Hub repo id)."""
    from huggingface_hub import ModelCard, ModelCardData

    record = config.base_model
    hub_id = record["hub_id"] if record else ""
    data = ModelCardData(library_name=LIBRARY_NAME, base_model=hub_id or None, tags=list(TAGS))
    descriptions = descriptions or {}
    training = config.training or {}
    card = ModelCard.from_template(
        data,
        template_str=TEMPLATE,
        title=f"Toolkens: {len(config.tools)} tools for {config.model_name}",
        model_name=config.model_name,
        base_model_text=_base_model_text(config),
        fingerprint=config.model_fingerprint,
        hidden_size=config.hidden_size,
        tools=[(name, _cell(descriptions.get(name, ""))) for name in config.tool_names],
        toolset=config.toolset,
        training_text=_training_text(config, training),
        heldout_text=_heldout_text(training),
        ref=ref,
        tools_arg=json.dumps(config.toolset) if config.toolset else "[...]",
        tools_cli=config.toolset or "mytools.py",
    )
    return str(card)


def _cell(text: str) -> str:
    """A description's first line, fit for a table cell."""
    first = " ".join(text.strip().splitlines()[0].split()) if text.strip() else ""
    return first.replace("|", "\\|")


def _base_model_text(config: Any) -> str:
    record = config.base_model
    if record is None:
        return f"`{config.model_name}` (model spec `{config.model}`; recorded before base models were described)."
    if record["kind"] == "embedded":
        return (f"{config.model_name}, the model embedded in toolken-agent: the GGUF `{record['name']}` "
                f"(sha256 `{record['sha256']}`), a quantization of [{record['hub_id']}](https://huggingface.co/{record['hub_id']}).")
    if record["kind"] == "gguf":
        return f"The GGUF file `{record['name']}` (sha256 `{record['sha256']}`)."
    if record["kind"] == "directory":
        return f"The local model directory `{record['name']}`."
    return f"[{record['name']}](https://huggingface.co/{record['name']})" if record["hub_id"] else f"`{record['name']}`"


def _training_text(config: Any, training: Mapping[str, Any]) -> str:
    if not training:
        return f"Untrained: the `{config.prior}` prior rows alone."
    lines = [f"- {training.get('examples', 0)} conversations trained on, {training.get('heldout_examples', 0)} held out"
             f" ({training.get('tokens', 0)} tokens, {training.get('call_positions', 0)} call positions)"]
    if training.get("negatives_added"):
        lines.append(f"- {training['negatives_added']} built-in requests that need no tool added")
    if training.get("reworded_added"):
        lines.append(f"- {training['reworded_added']} reworded twins of training requests added")
    if training.get("results_added"):
        lines.append(f"- {training['results_added']} conversations given a result turn and a reply after their calls")
    sweep = training.get("lambda_sweep") or {}
    chosen = " (chosen on a split of the training data)" if sweep else ""
    lines.append(f"- prior `{config.prior}`, lambda {config.lambda_:g}{chosen}, {training.get('epochs_done', 0)} epochs")
    if training.get("check_examples"):
        mix = f"; tool-choice mix {training['mix']:g}, cross-fitted on them" if training.get("mix_scores") else ""
        lines.append(f"- {training['check_examples']} real check requests joined the training data; the call gate's "
                     f"radius is set on them{mix}")
    if config.call_threshold is not None:
        lines.append(f"- call gate threshold {config.call_threshold:.3f}")
    if training.get("interrupted"):
        lines.append("- **interrupted**: these are the last finished epoch's rows")
    return "\n".join(lines)


def _heldout_text(training: Mapping[str, Any]) -> str:
    heldout, prior = training.get("heldout") or {}, training.get("prior_heldout") or {}
    if not heldout:
        return "None: fewer than 10 conversations, or no held-out share."
    rows = ["| | accuracy | calls right | no-call right | decisions |", "|---|---|---|---|---|"]
    for label, figures in (("priors only", prior), ("trained", heldout)):
        if figures:
            rows.append(f"| {label} | " + " | ".join(_figure(figures.get(k)) for k in
                                                      ("accuracy", "call_accuracy", "no_call_accuracy", "decisions")) + " |")
    return "\n".join(rows)


def _figure(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)
