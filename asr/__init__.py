"""asr: the speech workload azsim scores (floor 2: uses azsim's chip API, never the reverse)."""
