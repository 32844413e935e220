"""Branching (amortized) encoder: per-frame routing between a lean and a full encoder.

asr.branching.backlog (backlog, penalties, queueing timeline), asr.branching.gumbel
(straight-through Gumbel-softmax, temperature annealing), asr.branching.model (BranchingRNNT),
asr.branching.costs (chip cycles via azsim, host FLOPs), asr.branching.train (training loop).
"""
