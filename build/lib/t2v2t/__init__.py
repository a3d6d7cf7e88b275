"""T2V2T: text-to-video retrieval with text-to-video-to-text fusion (VindLU family)."""

__version__ = "0.1.0"
