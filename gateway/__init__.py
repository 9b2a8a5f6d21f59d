"""The enforcing gateway: LLM and MCP proxies that refuse a killed agent's calls and meter its usage."""
