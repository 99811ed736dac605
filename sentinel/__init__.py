"""run-sentinel: in-process side. PLACEHOLDER, filled by the in-process issue."""

__version__ = "0.1.0"
