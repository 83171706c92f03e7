"""The package version, kept apart so modules can import it without cycles."""

__version__ = "0.2.0"
