"""Decoding an RNN-T: greedy search, beam search with an N-best list, and word lattices.

Every search here runs against the small model interface below, which the numpy float
model (`asr.model.numpy_rnnt.NumpyRNNT`) and the int8 on-chip model both implement:

- ``vocab_size``, ``blank``
- ``encoder_init() -> state``; ``encode(x (T, 240) float32, state) -> (enc (T, J), state)``
  (chunk-streamable: encoding in pieces equals encoding at once)
- ``predictor_init() -> state`` (start-of-sequence = blank);
  ``predict(token, state) -> (pred (J,), state)``
- ``joint(enc (..., J), pred (..., J)) -> log_probs (..., V)``

Searches are incremental objects (``advance(enc_chunk)``, then ``nbest()``/``best``), so a
streaming recognizer, an end-pointer (it may observe every frame) and a biasing scorer (a
per-token bonus hook, see ``beam.TokenScorer``) plug in without touching the search itself.
"""
from asr.decode.hyp import Hypothesis
from asr.decode.greedy import GreedySearch, greedy_search
from asr.decode.beam import BeamSearch, TokenScorer, beam_search
from asr.decode.lattice import Lattice

__all__ = ["Hypothesis", "GreedySearch", "greedy_search", "BeamSearch", "TokenScorer",
           "beam_search", "Lattice"]
