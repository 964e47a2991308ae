"""The trainsim version: one number, read by the package metadata (``pyproject.toml``), the
public face (``simulator.__version__``, ``trainsim --version``) and the sweep's input keys."""

__version__ = "0.1.0"
