"""structbert-lite: gated, lightweight CPU artifacts of the StructBERT Chinese sentiment classifier."""

__version__ = "0.1.0"
