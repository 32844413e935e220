"""What the device sends downstream: lattice and N-best serialization, payload sizes, and the
lattices the end-point state machine attaches to its events."""
from __future__ import annotations

import json

import numpy as np
import pytest

from asr.decode import BeamSearch, Lattice, beam_search
from asr.decode.endpoint import (CODEC_BITS_PER_S, PCM_BYTES_PER_S, EndpointStateMachine,
                                 SilenceEndpointer, nbest_json, uplink_bytes)
from asr.decode.toy import RandomRNNT
from azsim.errors import FormatError


def _nbest(seed=0, frames=80, beam=4):
    model = RandomRNNT(seed)
    x = np.random.default_rng(seed + 7).standard_normal((frames, model.input_dim)).astype(np.float32)
    enc = model.encode(x, model.encoder_init())[0]
    return beam_search(model, enc, beam=beam)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lattice_json_round_trip_is_exact(seed):
    nbest = _nbest(seed)
    lat = Lattice.from_hypotheses(nbest, 30.0)
    payload = lat.to_json()
    again = Lattice.from_json(payload)
    assert again.to_json() == payload
    assert sorted(again.paths()) == sorted(lat.paths())
    assert lat.size_bytes() == len(payload.encode("utf-8"))
    # every N-best hypothesis is a path of the lattice
    paths = {words for words, _ in lat.paths()}
    for h in nbest:
        assert tuple(h.text.split()) in paths


def test_uplink_sizes():
    nbest = _nbest(3)
    lat = Lattice.from_hypotheses(nbest, 30.0)
    up = uplink_bytes(nbest, lat, audio_s=2.5)
    assert up["lattice_bytes"] == lat.size_bytes()
    assert up["nbest_bytes"] == len(nbest_json(nbest).encode())
    assert up["lattice_nbest_bytes"] == up["lattice_bytes"] + up["nbest_bytes"]
    assert up["pcm16_bytes"] == 2.5 * PCM_BYTES_PER_S == 80000
    assert up["codec24k_bytes"] == 2.5 * CODEC_BITS_PER_S / 8 == 7500
    decoded = json.loads(nbest_json(nbest))
    assert [t for t, _ in decoded] == [h.text for h in nbest]


@pytest.mark.parametrize("payload", ["", "{}", "[1,2]", '{"frame_ms":30,"words":["a"],"nodes":[0],'
                                     '"edges":[[0,5,0,0,1,0.0]],"final":[]}'])
def test_bad_lattice_json_is_a_format_error(payload):
    with pytest.raises(FormatError, match="lattice JSON"):
        Lattice.from_json(payload)


def test_event_lattices_serialize_and_match_the_search():
    model = RandomRNNT(5, blank_bias=3.0)
    x = np.random.default_rng(1).standard_normal((120, model.input_dim)).astype(np.float32)
    enc = model.encode(x, model.encoder_init())[0]
    m = EndpointStateMachine(final=SilenceEndpointer(240, min_blank_logprob=-5.0),
                             speculative=SilenceEndpointer(120, min_blank_logprob=-5.0))
    search = BeamSearch(model, beam=4, observers=[m])
    search.advance(enc)
    sent = [e for e in m.events if e.lattice is not None]
    assert sent, "the random model should pause long enough to end-point"
    for ev in sent:
        again = Lattice.from_json(ev.lattice.to_json())
        assert again.best_path()[0] == ev.lattice.best_path()[0]
        assert ev.as_dict()["lattice_bytes"] == len(ev.lattice.to_json())
