"""Built-in toolsets. `toolken_agent.tools.math` holds FuncQA's 13 arithmetic operations."""
