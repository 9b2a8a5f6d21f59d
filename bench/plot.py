"""``bench/results/kill_latency.png``: kill -> all acknowledged, p50 and p99 against N (log-log).

Drawn with the raw kill floor measured in the same run and the reference's 1 s promise as lines.
``python -m bench.plot [bench/results/latest.json]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.support.report import RESULTS_DIR

__all__ = ["plot_kill_latency"]


def plot_kill_latency(latest: dict[str, Any], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kl = latest.get("kill_latency") or {}
    by_n = kl.get("results", kl).get("by_n", {})
    points = sorted(
        (int(n), r["all_acked_ms"]["p50"], r["all_acked_ms"]["p99"])
        for n, r in by_n.items()
        if r.get("all_acked_ms", {}).get("p50") is not None
    )
    if not points:
        print("no kill latency results to plot")
        return None
    ns = [p[0] for p in points]
    floor = kl.get("results", kl).get("floor", {}).get("kill_ack_raw_ms", {}).get("p50")
    machine = kl.get("machine", {})
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    ax.plot(ns, [p[1] for p in points], "o-", label="kill → all acked, p50")
    ax.plot(ns, [p[2] for p in points], "s--", label="kill → all acked, p99")
    for n, p50, _ in points:
        ax.annotate(f"{p50:.3g} ms", (n, p50), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.axhline(1000, color="tab:red", linestyle=":", label="the 1 s promise")
    if floor:
        ax.axhline(
            floor, color="tab:gray", linestyle="-.", label=f"floor: raw kill round trip p50 ({floor:.2g} ms)"
        )
    peer = (latest.get("peer_celery") or {}).get("results", {}).get("comparison", {})
    if peer:
        pn = sorted(int(n) for n in peer if peer[n].get("celery_p50_ms") is not None)
        if pn:
            ax.plot(
                pn,
                [peer[str(n)]["celery_p50_ms"] for n in pn],
                "x:",
                color="tab:purple",
                label="Celery broadcast → all replied, p50",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("instances killed (N)")
    ax.set_ylabel("ms (log)")
    profile = latest.get("profile", "?")
    ax.set_title(
        f"agent-mesh kill latency on loopback ({machine.get('cores', '?')} cores, profile {profile})",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.text(0.01, 0.01, "python -m bench.run --profile " + str(profile), fontsize=7, color="gray")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    print(f"wrote {out}")
    return out


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    src = Path(args[0]) if args else RESULTS_DIR / "latest.json"
    plot_kill_latency(json.loads(src.read_text()), src.parent / "kill_latency.png")


if __name__ == "__main__":
    main()
