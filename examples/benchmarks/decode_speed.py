"""Per-token decoding cost of toolkens against plain generation, measured side by side.

    python examples/benchmarks/decode_speed.py [--model SPEC] [--tokens 64] [--rounds 5]

Three ways to produce the same number of text tokens from the same prompt, greedy, with a
KV cache, interleaved round by round so that machine load hits all of them alike:

* ``hf-generate``: transformers' ``generate`` (plain generation, the baseline);
* ``toolkens-none``: our decoding loop with every toolken masked;
* ``toolkens-auto``: our loop with the 13 math toolkens competing at each decision.

Toolkens are kept from firing (a large negative bias) so that all three write text only;
the ratio is the cost of the mode-switch machinery per token, not of running tools.
Prints a table of median seconds per token and the ratios against ``hf-generate``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from toolken_agent import Toolkens, load_model, load_toolset
from toolken_agent.conversation import Message
from toolken_agent.decoding import DecodeConfig, Decoder
from toolken_agent.model import FrozenLM

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def measure(lm: FrozenLM, *, tokens: int = 64, rounds: int = 5) -> dict[str, Any]:
    """Median seconds per token of each way, and its ratio against ``hf-generate``."""
    toolkens = Toolkens.from_priors(lm, load_toolset("math"))
    with torch.no_grad():
        toolkens.head.bias.fill_(-1e4)
    decoder = Decoder(toolkens)
    messages = [Message("user", PROMPT)]
    prompt = toolkens.chat_format.render(messages, add_generation_prompt=True).input_ids
    prompt_ids = torch.tensor([prompt])

    def hf_generate() -> int:
        with torch.inference_mode():
            out = lm.model.generate(prompt_ids, max_new_tokens=tokens, min_new_tokens=tokens,
                                    do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
        return out.shape[1] - len(prompt)

    def ours(choice: str) -> int:
        config = DecodeConfig(max_new_tokens=tokens, tool_choice=choice, stop=())
        for event in decoder.stream(messages, config):
            finished = event
        return finished.completion_tokens

    runs = {"hf-generate": hf_generate, "toolkens-none": lambda: ours("none"), "toolkens-auto": lambda: ours("auto")}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in runs.items():
            start = time.perf_counter()
            n = fn()
            times[name].append((time.perf_counter() - start) / max(n, 1))
    base = statistics.median(times["hf-generate"])
    return {
        "tokens": tokens, "rounds": rounds, "prompt_tokens": len(prompt), "toolkens": toolkens.head.n_tools,
        "seconds_per_token": {k: statistics.median(v) for k, v in times.items()},
        "ratio": {k: statistics.median(v) / base for k, v in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    lm = load_model(args.model, engine="transformers")
    result = measure(lm, tokens=args.tokens, rounds=args.rounds)
    print(f"model {lm.name} ({str(lm.dtype).replace('torch.', '')}), {args.tokens} tokens, {args.rounds} rounds, "
          f"prompt {result['prompt_tokens']} tokens, {torch.get_num_threads()} threads")
    print(f"{'method':<16}{'s/token (median)':>18}{'ratio':>8}")
    for name, seconds in result["seconds_per_token"].items():
        print(f"{name:<16}{seconds:>18.4f}{result['ratio'][name]:>8.3f}")


if __name__ == "__main__":
    main()
