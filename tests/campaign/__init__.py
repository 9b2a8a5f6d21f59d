"""A Jepsen-style fault campaign: a workload, a nemesis and a checker over the recorded history."""
