"""The package's exceptions. User mistakes are ``ValueError`` subclasses whose message says
what was received, what was expected and what to do."""

from __future__ import annotations


class TTScaleError(Exception):
    """Base class of every error ttscale raises on purpose."""


class ConfigError(TTScaleError, ValueError):
    """A setting, flag or argument is wrong. The message says how to fix it."""


class DatasetError(TTScaleError, ValueError):
    """A dataset name or file cannot be used."""


class ModelLoadError(TTScaleError):
    """A model file or endpoint cannot be opened."""


class EngineError(TTScaleError):
    """An engine call failed."""


class RetryableEngineError(EngineError):
    """A transient engine failure (timeout, overload, dropped connection): worth retrying."""


class ContextLengthError(EngineError):
    """A prompt plus its continuation does not fit the model's context window."""


class RunStateError(TTScaleError):
    """A run folder holds a run with other settings, or is otherwise unusable."""


RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (RetryableEngineError,)
