"""gitcoord's version: one place, below everything, so any layer may say it."""

__version__ = "0.1.0"
