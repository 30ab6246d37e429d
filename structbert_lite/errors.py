"""The small exception hierarchy of structbert-lite.

Every user-facing failure is a subclass of :class:`StructbertLiteError`; the CLI prints its message
and exits non-zero. Messages name the problem and how to fix it.
"""


class StructbertLiteError(Exception):
    """Base class: an error the user can act on."""


class ConfigError(StructbertLiteError, ValueError):
    """A pipeline config is invalid (unknown key, wrong type, impossible value)."""


class SourceError(StructbertLiteError):
    """A model source could not be resolved or downloaded."""


class CheckpointError(StructbertLiteError):
    """A checkpoint is missing, truncated, or does not match the architecture (strict load)."""


class ParityError(StructbertLiteError):
    """An exported or rewritten graph does not match the PyTorch reference within tolerance."""


class GraphStructureError(StructbertLiteError):
    """An ONNX graph lacks the structure we rely on (e.g. a fusion did not happen)."""


class ModelFileError(StructbertLiteError):
    """An ONNX file is missing, truncated or corrupt."""


class EvalDataError(StructbertLiteError):
    """An evaluation data set cannot be read or has too many bad rows."""


class GateError(StructbertLiteError):
    """One or more variants failed the publishing gate; ``result`` is the run's `pipeline.RunResult`."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


class ArtifactError(StructbertLiteError):
    """A published artifact folder is incomplete or does not match its manifest."""


class BaselineError(StructbertLiteError):
    """The source checkpoint itself fails sanity bounds on the eval set (broken labels or vocabulary)."""
