"""The siamedge exception hierarchy: every error a user can cause has a class and a clear message.

This module must never import anything beyond the standard library.
"""

from __future__ import annotations


class SiamedgeError(Exception):
    """Base class of every error siamedge raises on purpose."""


class ConfigError(SiamedgeError):
    """A configuration file or value is wrong; the message names the key and the file."""


class ModelError(SiamedgeError):
    """A model file is missing, unreadable, or does not follow the SiamMask ONNX contract."""


class SourceError(SiamedgeError):
    """A frame source cannot be opened or stopped delivering frames."""


class CommandError(SiamedgeError):
    """A track command (MQTT or HTTP) is malformed or cannot be carried out."""

    def __init__(self, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id


class ModelCallError(CommandError):
    """A command the model failed on (its call raised): nothing wrong with the command itself."""


class BoxError(SiamedgeError, ValueError):
    """A target box is unusable: non-positive size, not finite, or entirely outside the frame."""
