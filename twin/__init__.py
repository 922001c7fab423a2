"""gridtwin: agent-based co-simulation and digital twin of a distribution feeder."""

__all__ = ["__version__"]

__version__ = "0.1.0"
