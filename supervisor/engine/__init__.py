"""The Docker engine adapter (see :mod:`supervisor.engine.docker_engine`)."""

from supervisor.engine.models import (
    ExecResult,
    OneShotResult,
    PullProgress,
    RetainedContainer,
    ServiceContainer,
    StackService,
)
from supervisor.engine.protocol import Engine, OutputSink, ProgressCallback

__all__ = [
    "Engine",
    "ExecResult",
    "OneShotResult",
    "OutputSink",
    "ProgressCallback",
    "PullProgress",
    "RetainedContainer",
    "ServiceContainer",
    "StackService",
]
