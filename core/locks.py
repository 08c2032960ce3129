"""One re-entrant lock per loaded model, shared by everything that runs or hooks it.

The dashboard caches one model object for all sessions. Captum attaches forward hooks to the model
it explains, so a plain forward pass from another session in the middle of an explanation would
feed (and trip) those hooks. ``core.predict`` and ``core.explain`` both take :func:`model_lock`
around their work on a model, which serialises them per model and never across models.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The one lock of ``model`` (created on first use, freed with the model).

    Re-entrant, so a caller already holding it may call functions that take it again.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = threading.RLock()
            _LOCKS[model] = lock
        return lock


@contextmanager
def locked_eval(model: nn.Module) -> Iterator[None]:
    """Hold the model's lock with every module in eval mode (dropout off, BatchNorm frozen).

    Modes are switched, and restored afterwards, only for modules that were training, so the usual
    case (a loaded model, already in eval mode) costs nothing.
    """
    with model_lock(model):
        training = [module for module in model.modules() if module.training]
        for module in training:
            module.training = False
        try:
            yield
        finally:
            for module in training:
                module.training = True
