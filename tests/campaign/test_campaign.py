"""The fault campaign, short and seeded, in `make test`: a real server, controller and agent
processes, random kills and resumes, random faults; the checker must find no anomaly.

The long runs are `make chaos-campaign` (CAMPAIGN_SECONDS, CAMPAIGN_SEED, CAMPAIGN_TOPOLOGY).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .run import campaign, table

pytestmark = [pytest.mark.campaign, pytest.mark.chaos, pytest.mark.timeout(180)]


async def test_short_seeded_campaign_finds_no_anomaly(tmp_path: Path) -> None:
    seed = int(os.environ.get("CAMPAIGN_SEED", "1"))
    result = await campaign(10.0, seed, "single", tmp_path, tmp_path / "campaign.json")
    s = result.summary
    # the run did what a campaign is for: operations, faults, actions, acknowledgements
    assert s["operations_ok"] >= 5 and s["faults"] >= 1, table(result)
    assert s["guarded_actions"] > 100 and s["halt_acks"] >= 1, table(result)
    assert result.anomalies == [], table(result)
    assert (tmp_path / "campaign.json").stat().st_size > 0
