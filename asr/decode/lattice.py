"""Word lattices built from beam-search hypotheses: what the device sends to the cloud.

Nodes are points in time (encoder frames; ``frame_ms`` converts). An edge carries a word,
the frames of its first and last character (``start``, ``end`` = last + 1) and its share of
the hypothesis score: the score gained from the end of the previous word up to the end of
this one. A node may be final with a final score (the blanks after the last word), so a
path's edge scores plus its final score add up to the hypothesis score.

Construction: hypotheses become word sequences; shared prefixes (same word, same times,
from the same node) are merged into a prefix tree, then nodes with identical futures (same
time, same final score, same outgoing edges) are merged, so common suffixes are shared too.
The lattice's paths are exactly the distinct word sequences of the hypotheses it was built
from (two hypotheses differing only in spaces become one path; their final scores log-add).
Scores are rounded to 4 decimals (1e-4 nats) so the JSON round trip is exact.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from asr.decode.hyp import Hypothesis
from asr.text import VOCAB, BLANK

_SPACE = VOCAB.index(" ")
_DIGITS = 4


@dataclass(frozen=True)
class Edge:
    src: int
    dst: int
    word: str
    start: int  # frame of the word's first character
    end: int    # frame of its last character + 1
    score: float


def _words(h: Hypothesis) -> list[tuple[str, int, int, float]]:
    """(word, start frame, end frame, cumulative score at the word's last character)."""
    out, chars, start, last, cum = [], [], 0, 0, 0.0
    for tok, frame, score in zip(h.tokens, h.token_frames, h.token_scores):
        if tok == _SPACE or tok == BLANK:
            if chars:
                out.append(("".join(chars), start, last + 1, cum))
                chars = []
            continue
        if not chars:
            start = frame
        chars.append(VOCAB[tok])
        last, cum = frame, score
    if chars:
        out.append(("".join(chars), start, last + 1, cum))
    return out


def _r(x: float) -> float:
    return round(float(x), _DIGITS) + 0.0  # + 0.0 turns -0.0 into 0.0


@dataclass
class Lattice:
    node_frames: list[int] = field(default_factory=lambda: [0])
    edges: list[Edge] = field(default_factory=list)
    finals: dict[int, float] = field(default_factory=dict)
    frame_ms: float = 30.0

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_hypotheses(cls, hyps: Iterable[Hypothesis], frame_ms: float = 30.0,
                        start_frame: int = 0) -> "Lattice":
        node_frames = [start_frame]
        children: dict[tuple, int] = {}
        edge_score: dict[tuple, float] = {}
        finals: dict[int, float] = {}
        for h in hyps:
            node, prev_cum = 0, 0.0
            for word, start, end, cum in _words(h):
                key = (node, word, start, end)
                dst = children.get(key)
                if dst is None:
                    dst = children[key] = len(node_frames)
                    node_frames.append(end)
                    edge_score[key] = _r(cum - prev_cum)
                else:  # same words at the same times: one alignment, keep the better share
                    edge_score[key] = max(edge_score[key], _r(cum - prev_cum))
                node, prev_cum = dst, cum
            tail = float(h.score) - prev_cum
            finals[node] = tail if node not in finals else float(math.log(math.exp(finals[node] - tail) + 1.0) + tail)
        finals = {n: _r(s) for n, s in finals.items()}
        out_edges: dict[int, list[tuple]] = {}
        for (src, word, start, end), dst in children.items():
            out_edges.setdefault(src, []).append((word, start, end, edge_score[(src, word, start, end)], dst))
        # Merge nodes with identical futures. Children always have larger ids than their
        # parents, so visiting ids downwards sees every child's class before its parent.
        canon: dict[int, int] = {}
        by_signature: dict[tuple, int] = {}
        for n in range(len(node_frames) - 1, -1, -1):
            sig = (node_frames[n], finals.get(n),
                   tuple(sorted((w, s, e, sc, canon[d]) for w, s, e, sc, d in out_edges.get(n, ()))))
            canon[n] = by_signature.setdefault(sig, n)
        keep = sorted(set(canon.values()))
        new_id = {old: i for i, old in enumerate(keep)}
        edges = sorted({Edge(new_id[canon[src]], new_id[canon[d]], w, s, e, sc)
                        for src, lst in out_edges.items() if canon[src] == src
                        for w, s, e, sc, d in lst},
                       key=lambda ed: (ed.src, ed.start, ed.end, ed.word, ed.dst, ed.score))
        return cls([node_frames[o] for o in keep], edges,
                   {new_id[n]: s for n, s in sorted(finals.items()) if canon[n] == n}, float(frame_ms))

    # ---------------------------------------------------------------- queries
    def paths(self) -> Iterator[tuple[tuple[str, ...], float]]:
        """Every (word sequence, score) from the start node to a final node."""
        out: dict[int, list[Edge]] = {}
        for ed in self.edges:
            out.setdefault(ed.src, []).append(ed)
        stack = [(0, (), 0.0)]
        while stack:
            node, words, score = stack.pop()
            if node in self.finals:
                yield words, _r(score + self.finals[node])
            for ed in reversed(out.get(node, [])):
                stack.append((ed.dst, words + (ed.word,), score + ed.score))

    def best_path(self) -> tuple[tuple[str, ...], float]:
        return max(self.paths(), key=lambda p: p[1], default=((), float("-inf")))

    @property
    def num_nodes(self) -> int:
        return len(self.node_frames)

    # ---------------------------------------------------------------- serialization
    def to_dict(self) -> dict:
        words = sorted({ed.word for ed in self.edges})
        index = {w: i for i, w in enumerate(words)}
        return {"frame_ms": self.frame_ms, "words": words, "nodes": list(self.node_frames),
                "edges": [[ed.src, ed.dst, index[ed.word], ed.start, ed.end, ed.score] for ed in self.edges],
                "final": [[n, s] for n, s in self.finals.items()]}

    def to_json(self) -> str:
        """Compact JSON (no spaces): the uplink payload."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def size_bytes(self) -> int:
        return len(self.to_json().encode("utf-8"))

    @classmethod
    def from_json(cls, payload: str | bytes) -> "Lattice":
        from azsim.errors import FormatError
        try:
            d = json.loads(payload)
            words = d["words"]
            nodes = [int(t) for t in d["nodes"]]
            edges = []
            for row in d["edges"]:
                src, dst, w, start, end, score = row
                if not (0 <= src < len(nodes) and 0 <= dst < len(nodes) and 0 <= w < len(words)):
                    raise ValueError(f"edge {row} refers to a node or word that does not exist")
                edges.append(Edge(int(src), int(dst), str(words[w]), int(start), int(end), float(score)))
            finals = {}
            for n, s in d["final"]:
                if not 0 <= n < len(nodes):
                    raise ValueError(f"final node {n} does not exist (nodes: 0..{len(nodes) - 1})")
                finals[int(n)] = float(s)
            return cls(nodes, edges, finals, float(d["frame_ms"]))
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise FormatError(f"lattice JSON: {err}; expected keys frame_ms, words, nodes, "
                              f"edges ([src, dst, word, start, end, score]), final ([node, score])") from None
