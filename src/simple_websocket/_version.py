"""The package version, in a module of its own so that every layer can read it."""

__version__ = "2.0.0.dev0"
