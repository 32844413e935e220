"""Context biasing by shallow fusion: a per-request list of names compiled into a character
prefix tree with failure arcs (Aho-Corasick), scored during beam search.

    bias = BiasList.compile(["kathleen bailey", "dishwasher"], weight=1.5)
    search = BeamSearch(model, beam=4, scorer=bias)

How the boost works (the ``asr.decode.beam.TokenScorer`` protocol):

- Every name is stored as ``" name "``: a leading and a trailing word boundary, so a name only
  matches whole words ("ann" does not fire inside "joanna"), and the start of the utterance
  counts as a boundary.
- Each token that extends a partial match earns ``weight`` (log-prob units); the leading
  boundary space earns nothing, so a space alone is never boosted.
- When the next token breaks the partial match, the automaton follows failure arcs to the
  longest suffix that is still a prefix of some name, and the boost of the tokens that no
  longer belong to a match is *withdrawn* (a negative bonus). A hypothesis that starts a name
  and leaves it therefore ends up with no net bonus: partial matches only keep candidates
  alive in the beam, they do not change final scores.
- When a name completes (its trailing boundary is emitted), its boost is locked in and never
  withdrawn. At the end of the utterance (``final``), an unfinished match is withdrawn, except
  a name that is complete but for its trailing boundary.

Carrier prefixes (optional, per class of names): a name compiled with prefixes, e.g. contacts
with ``["call", "text"]``, is stored as ``" call kathleen bailey "`` and ``" text kathleen
bailey "``, and only the name's own tokens earn the boost. A hypothesis gets no boost for a
contact until it has said a carrier word, so utterances without names are left alone (class
prefixes as in Zhao et al., "Shallow-fusion end-to-end contextual biasing", Interspeech 2019).

The scorer state is the tuple ``(node, since_lock)``: the automaton node, and how many tokens have been
emitted since the last completed name (capped at the longest name). The unlocked boost is
``weight * min(boosted(node), since_lock)``, where boosted(node) counts the name tokens on the
node's path (depth - 1 without a prefix): of the current partial match, only the tokens
after the last completed name hold a boost that may still be withdrawn. States are a function
of the token sequence alone, as beam search requires.

The automaton is a dense transition table (nodes x vocabulary, int32) built once per list, so
scoring one token is two array lookups whatever the list size.
"""
from __future__ import annotations

from collections import deque
import numpy as np

from asr.text import BLANK, VOCAB, VOCAB_SIZE
from azsim.errors import ConfigError

MAX_NAMES = 5000          # a request's bias list may hold at most this many names
MAX_NAME_CHARS = 64       # ... each at most this many characters
MAX_PATTERNS = 50_000     # names x carrier prefixes in one automaton (~1 M nodes, ~120 MB)
WEIGHT_RANGE = (0.0, 20.0)
_SPACE = VOCAB.index(" ")
_INDEX = {ch: i for i, ch in enumerate(VOCAB) if i != BLANK}
_ALLOWED = "a-z, apostrophe and space"


def normalize_names(names, source: str = "bias list") -> list[str]:
    """Validate a bias list and return its names lowercased with single spaces, deduplicated.

    Raises ConfigError (naming the list, the entry and the allowed range) for: a list that is
    not a list of strings, an empty list, more than MAX_NAMES names, an empty or over-long
    name, or a name with characters outside the recognizer's vocabulary.
    """
    if isinstance(names, (str, bytes)) or not hasattr(names, "__iter__"):
        raise ConfigError(f"{source}: must be a list of names (strings), got {type(names).__name__}")
    names = list(names)
    if not names:
        raise ConfigError(f"{source}: is empty; give 1 to {MAX_NAMES} names")
    if len(names) > MAX_NAMES:
        raise ConfigError(f"{source}: has {len(names)} names; allowed: 1 to {MAX_NAMES}")
    out: dict[str, None] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise ConfigError(f"{source}: entry {i} is {type(name).__name__} {name!r}, not text; "
                              f"names must be strings of {_ALLOWED}")
        norm = " ".join(name.lower().split())
        if not norm:
            raise ConfigError(f"{source}: entry {i} ({name!r}) is empty; names must have 1 to "
                              f"{MAX_NAME_CHARS} characters of {_ALLOWED}")
        if len(norm) > MAX_NAME_CHARS:
            raise ConfigError(f"{source}: entry {i} ({name[:20]!r}...) has {len(norm)} characters; "
                              f"allowed: 1 to {MAX_NAME_CHARS}")
        bad = sorted({ch for ch in norm if ch not in _INDEX})
        if bad:
            raise ConfigError(f"{source}: entry {i} ({name!r}) has characters {''.join(bad)!r} "
                              f"outside the recognizer's vocabulary; allowed: {_ALLOWED} "
                              f"(spell digits out as words)")
        out[norm] = None
    return list(out)


def load_names(path) -> list[str]:
    """A bias list from a text file, one name per line (blank lines skipped)."""
    from pathlib import Path
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: bias list file not found") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p}: bias list is not UTF-8 text ({err.reason} at byte {err.start})") from None
    return normalize_names([ln for ln in text.splitlines() if ln.strip()], source=str(p))


class BiasList:
    """An Aho-Corasick automaton over one request's names; a beam-search TokenScorer."""

    def __init__(self, names: list[str], weight: float, goto: np.ndarray, depth: np.ndarray,
                 is_end: np.ndarray, parent: np.ndarray, fail: np.ndarray, end_bonus: float = 0.0,
                 boosted: np.ndarray | None = None, end_name: dict | None = None):
        self.names = names
        self.weight = float(weight)
        self.end_bonus = float(end_bonus)
        self.goto = goto          # (nodes, V) int32: the automaton's transition (failure arcs folded in)
        self.depth = depth        # (nodes,) characters from the root
        self.is_end = is_end      # (nodes,) a name (with its trailing boundary) ends here
        self.parent = parent      # (nodes,) trie parent (-1 at the root)
        self.fail = fail          # (nodes,) failure arc: longest proper suffix that is a trie node
        self.max_depth = int(depth.max())
        self._start = int(goto[0, _SPACE])
        # Python lists: scoring runs per beam candidate, and list indexing of ints is several
        # times faster than numpy scalar indexing.
        self._goto = goto.tolist()
        self._depth1 = (depth - 1).tolist()
        self.boosted = depth - 1 if boosted is None else boosted   # (nodes,) boost-earning tokens
        self._boosted = np.maximum(self.boosted, 0).tolist()
        self._is_end = is_end.tolist()
        self._end_name = end_name or {}    # end node -> the name (without its carrier prefix)
        self._tables = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def compile(cls, names, weight: float = 1.5, source: str = "bias list",
                end_bonus: float = 0.0, prefixes=None) -> "BiasList":
        """``weight`` per matched token (withdrawn if the match breaks); ``end_bonus`` once per
        completed name (never withdrawn); ``prefixes``: carrier words or phrases a name must
        follow to be boosted (None: boosted anywhere)."""
        return cls.compile_classes([(names, prefixes)], weight, source, end_bonus)

    @classmethod
    def compile_classes(cls, classes, weight: float = 1.5, source: str = "bias list",
                        end_bonus: float = 0.0) -> "BiasList":
        """One automaton for several classes of names, each ``(names, prefixes or None)``,
        e.g. contacts after "call"/"text" and appliances after "the"."""
        for label, v in (("boost weight", weight), ("end bonus", end_bonus)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    WEIGHT_RANGE[0] <= v <= WEIGHT_RANGE[1]):
                raise ConfigError(f"{source}: {label} = {v!r}; allowed: a number in "
                                  f"[{WEIGHT_RANGE[0]}, {WEIGHT_RANGE[1]}] (log-prob units)")
        patterns, all_names = [], []
        for names, prefixes in classes:
            names = normalize_names(names, source)
            all_names += names
            pre = [None] if prefixes is None else normalize_names(prefixes, f"{source} prefixes")
            patterns += [(p, n) for n in names for p in pre]
        all_names = list(dict.fromkeys(all_names))
        if len(patterns) > MAX_PATTERNS:   # the dense automaton grows with names x prefixes
            raise ConfigError(f"{source}: {len(patterns)} name-prefix pairs; allowed: at most "
                              f"{MAX_PATTERNS} (fewer names or fewer carrier prefixes)")
        children: list[dict[int, int]] = [{}]
        depth, parent, is_end, boosted = [0], [-1], [False], [0]
        end_name: dict[int, str] = {}
        for prefix, name in patterns:
            node = 0
            text = f" {name} " if prefix is None else f" {prefix} {name} "
            lead = len(text) - len(name) - 1       # leading boundary (and prefix): no boost
            for i, ch in enumerate(text):
                tok = _INDEX[ch]
                b = max(0, i + 1 - lead)
                nxt = children[node].get(tok)
                if nxt is None:
                    nxt = children[node][tok] = len(children)
                    children.append({})
                    depth.append(depth[node] + 1)
                    parent.append(node)
                    is_end.append(False)
                    boosted.append(b)
                else:   # a path shared by patterns with different prefixes: the smaller boost
                    boosted[nxt] = min(boosted[nxt], b)
                node = nxt
            is_end[node] = True
            end_name[node] = name
        n = len(children)
        goto = np.zeros((n, VOCAB_SIZE), np.int32)
        fail = np.zeros(n, np.int32)
        # Breadth-first: a node's failure arc points to a shallower node whose row is final.
        queue = deque()
        for tok, child in children[0].items():
            goto[0, tok] = child
            queue.append(child)
        while queue:
            u = queue.popleft()
            goto[u] = goto[fail[u]]
            for tok, child in children[u].items():
                fail[child] = goto[fail[u], tok] if u else 0
                goto[u, tok] = child
                queue.append(child)
        goto[:, BLANK] = np.arange(n)  # blank never reaches a scorer; keep the state if it does
        return cls(all_names, weight, goto, np.array(depth, np.int32), np.array(is_end, bool),
                   np.array(parent, np.int32), fail, end_bonus, np.array(boosted, np.int32), end_name)

    @property
    def num_nodes(self) -> int:
        return int(self.goto.shape[0])

    def node_text(self, node: int) -> str:
        chars = []
        while node > 0:
            p = int(self.parent[node])
            chars.append(VOCAB[int(np.flatnonzero(self.goto[p] == node)[0])] if p >= 0 else "")
            node = p
        return "".join(reversed(chars))

    # ------------------------------------------------------------------ TokenScorer
    # A state is the tuple (node, since_lock) (module doc); plain tuples keep scoring cheap.
    def _pending(self, node: int, since_lock: int) -> float:
        d = self._boosted[node]
        return self.weight * (d if d < since_lock else since_lock) if d > 0 else 0.0

    def automaton_tables(self) -> tuple:
        """The automaton for compiled beam search (asr.decode.beam_kernel.select): transitions,
        boost-earning tokens per node, name ends, weight, completion bonus, and the cap on
        tokens since the last completed name."""
        if self._tables is None:
            self._tables = (np.ascontiguousarray(self.goto, np.int32),
                            np.maximum(self.boosted, 0).astype(np.int64),
                            np.ascontiguousarray(self.is_end, np.bool_),
                            self.weight, self.end_bonus, self.max_depth)
        return self._tables

    def initial_state(self) -> tuple[int, int]:
        # The start of the utterance is a word boundary: as if a space had just been read.
        return (self._start, 0)

    def advance(self, state: tuple[int, int], token: int) -> tuple[float, tuple[int, int]]:
        node, since = state
        nxt = self._goto[node][token]
        before = self._pending(node, since)
        since = since + 1 if since < self.max_depth else since
        after = self._pending(nxt, since)
        if self._is_end[nxt]:
            # name complete: its boost is locked in, plus the completion bonus
            return after - before + self.end_bonus, (nxt, 0)
        return after - before, (nxt, since)

    def final(self, state: tuple[int, int]) -> float:
        node, since = state
        pending = self._pending(node, since)
        nxt = self._goto[node][_SPACE]
        if self._is_end[nxt] and self._depth1[nxt] == self._depth1[node] + 1:
            # a whole name but for its trailing boundary: keep it, and grant the boundary too
            return self._pending(nxt, since + 1) - pending + self.end_bonus
        return -pending

    def total_bonus(self, tokens) -> float:
        """The bonus a hypothesis with these tokens gets in all (tokens' bonuses + final)."""
        s, total = self.initial_state(), 0.0
        for t in tokens:
            b, s = self.advance(s, int(t))
            total += b
        return total + self.final(s)

    def matches(self, text: str) -> list[str]:
        """Names found in `text` as whole words (left to right, overlapping allowed)."""
        found, node = [], self._start
        for ch in f"{text} ":
            node = int(self.goto[node, _INDEX[ch]])
            v = node
            while v > 0:  # report every name ending here (the failure chain holds the shorter ones)
                if self.is_end[v]:
                    found.append(self._end_name.get(v) or self.node_text(v).strip())
                v = int(self.fail[v])
        return found


__all__ = ["BiasList", "normalize_names", "load_names", "MAX_NAMES", "MAX_NAME_CHARS"]
