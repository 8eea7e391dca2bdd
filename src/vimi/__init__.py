"""vimi: grounded video generation from multimodal instructions (an open implementation of VIMI)."""

__version__ = "0.1.0"
