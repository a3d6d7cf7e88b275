"""Tools built on the library: the demo, the attribute probe, benchmark bookkeeping.

The library (``t2v2t.data``, ``t2v2t.models``, ``t2v2t.training``, ``t2v2t.retrieval``) never
imports from here or from ``scripts/`` (tests/test_layout.py)."""
