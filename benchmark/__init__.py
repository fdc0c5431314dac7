"""Editing-Mask Bench: an evaluation harness for diffusion-based image editing."""

__version__ = "0.1.0"
