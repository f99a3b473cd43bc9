"""A LangChain v1 agent on a local frozen model whose tool choice comes from toolkens.

    toolken-agent train --tools math --out toolkens-math     # once, about a minute
    python examples/langchain_agent.py "What is 37 times 91?"

The agent (``langchain.agents.create_agent``) sends the question to ``ChatToolken``;
the multiply toolken fires, the model writes ``{"numbers":[37,91]}`` under the tool's
schema, the agent runs the tool, and the model answers from its result.
"""

from __future__ import annotations

import argparse

from langchain.agents import create_agent

from toolken_agent import ChatToolken
from toolken_agent.integrations.langchain import as_langchain_tool
from toolken_agent.tools.math import TOOLS


def build_agent(toolkens: str | None = "toolkens-math", model: str | None = None):
    llm = ChatToolken(model=model, toolkens=toolkens, max_tokens=64)
    return create_agent(llm, [as_langchain_tool(t) for t in TOOLS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="What is 37 times 91?")
    parser.add_argument("--toolkens", default="toolkens-math", help="checkpoint from `toolken-agent train --tools math`")
    args = parser.parse_args()
    result = build_agent(args.toolkens).invoke({"messages": [("user", args.question)]})
    for message in result["messages"]:
        message.pretty_print()


if __name__ == "__main__":
    main()
