"""Adapters from toolken-agent to agent frameworks (LangChain's chat model interface)."""
