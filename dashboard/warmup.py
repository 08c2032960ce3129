"""Load PyTorch and the models when the server starts, before the first visitor arrives.

``streamlit run dashboard/Home.py`` serves the app as an ``st.App`` whose lifespan starts
:func:`warm_up` in a background thread: importing PyTorch and loading and verifying five models
takes seconds, which a visitor who opens the page at once now spends while the browser loads the
page. Sessions share the models through ``st.cache_resource``; a session that arrives before the
warm-up has finished shows a progress box and waits for it (:func:`warm_up` runs once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

WARM_UP_THREAD = "digit-lens-warm-up"
# Where Streamlit logs "missing ScriptRunContext" (a cache filled outside a session).
SCRIPT_RUN_CONTEXT_LOGGER = "streamlit.runtime.scriptrunner_utils.script_run_context"
_READY = threading.Event()
_LOCK = threading.Lock()


class _QuietWarmUp(logging.Filter):
    """Drop Streamlit's "missing ScriptRunContext" warning for the warm-up thread, which fills a
    cache outside any session on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != WARM_UP_THREAD


def ready() -> bool:
    """Whether PyTorch and the models are loaded."""
    return _READY.is_set()


def warm_up() -> None:
    """Import the dashboard's heavy modules and fill the model cache, once per process; callers
    that arrive while it runs wait for it. Checkpoint errors are left to the pages, which show
    them (the model store records them)."""
    with _LOCK:
        if _READY.is_set():
            return
        try:
            from dashboard import loaders

            loaders.model_store()
        finally:
            _READY.set()


def _warm_up_in_background() -> None:
    try:
        warm_up()
    except Exception as error:  # the pages show the error to the visitor
        logging.getLogger(__name__).warning("warm-up failed: %s", error)


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    """Start :func:`warm_up` beside the server; nothing to tear down."""
    logging.getLogger(SCRIPT_RUN_CONTEXT_LOGGER).addFilter(_QuietWarmUp())
    threading.Thread(target=_warm_up_in_background, name=WARM_UP_THREAD, daemon=True).start()
    yield
