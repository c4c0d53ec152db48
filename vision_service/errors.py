"""Domain errors of the vision service. The servicer maps each to one gRPC status code."""

from __future__ import annotations


class VisionError(Exception):
    """Base class of every error the vision domain raises on purpose."""


class InvalidImageError(VisionError):
    """The bytes are not an image we can read: not an image, truncated, a decompression bomb,
    or too large. The caller sent bad input (INVALID_ARGUMENT)."""


class InvalidTextError(VisionError):
    """A text to embed is unusable (empty list, too many texts). INVALID_ARGUMENT."""


class ModelFileError(VisionError):
    """A model file is missing, or its sha256 does not match the manifest: the service must
    refuse to start rather than run a model nobody verified."""


class ModelsNotLoadedError(VisionError):
    """The models are still loading; the caller should retry (UNAVAILABLE)."""
