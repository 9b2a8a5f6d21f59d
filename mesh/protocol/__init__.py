"""The pure protocol: targets, subjects, wire models and the kill, policy and quota logic (no I/O)."""
