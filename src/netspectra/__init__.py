"""NetSpectra: network traffic monitoring and analysis over columnar packet batches."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # the version is read from the installed metadata on first use: importlib.metadata costs tens of
    # milliseconds, which every command (``--help`` included) would otherwise pay at start-up
    if name != "__version__":
        raise AttributeError(f"module 'netspectra' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("netspectra")
    except PackageNotFoundError:  # running from a source tree without installation
        value = "0.0.0+unknown"
    globals()["__version__"] = value
    return value
