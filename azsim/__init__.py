"""azsim: a cycle-approximate neural edge processor that computes exact int8 results.

Floor 1 (chip): hw, graph, compress, compile, engine. Knows nothing of speech.
"""
__version__ = "0.1.0"
