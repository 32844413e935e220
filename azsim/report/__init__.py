"""HTML reports of sweeps (azsim report)."""
