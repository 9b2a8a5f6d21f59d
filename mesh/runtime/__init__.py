"""Process plumbing every layer shares: settings, logging, asyncio helpers, signals, restarts, tracing."""
