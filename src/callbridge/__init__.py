"""callbridge: a self-hosted programmable voice platform."""

__version__ = "0.1.0"
__all__ = ["__version__"]
