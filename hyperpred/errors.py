"""Errors that carry a message meant for the person who wrote the config or the file."""


class HyperpredError(Exception):
    """Base class: the message is complete; no traceback is needed to understand it."""


class ConfigError(HyperpredError, ValueError):
    """A config value is invalid or two config choices conflict. The message names the keys."""


class ZooFileError(HyperpredError, OSError):
    """A zoo file is missing, truncated, altered, or from another format. The message names it."""
