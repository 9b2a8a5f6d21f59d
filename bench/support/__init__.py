"""Helpers the bench scripts share: statistics, output, machine facts, child processes, profiling."""
