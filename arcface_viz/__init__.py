"""arcface-viz: lessons, training and tools for margin-based softmax losses (ArcFace and its family)."""

__version__ = "0.1.0"
