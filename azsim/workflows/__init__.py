"""Floor 3: workflows that use the chip (azsim) and the speech workload (asr) together."""
