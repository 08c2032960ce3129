"""What every page does first and last: its heading, and turning expected failures into messages.

:func:`guard` is the one place where the errors ``core`` raises for bad checkpoints, missing data
and unreadable images become ``st.error`` / ``st.info`` instead of a traceback. Text that comes
from users (file names) is escaped with :func:`escape_markdown` before it reaches Markdown.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from core.checkpoints import CheckpointError
from core.data import DataUnavailableError
from core.preprocess import InvalidImageError
from dashboard import loaders, navigation

PAGE_KEY = "dl.page"

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def page_setup(key: str, heading: str | None = None) -> bool:
    """The heading of page ``key`` (its registry title unless ``heading``); call first.

    Returns whether the user just arrived on this page (the previous run showed another page),
    which is when widgets of this page were mounted afresh.
    """
    st.title(heading or navigation.PAGES[key].title)
    arrived = st.session_state.get(PAGE_KEY) != key
    st.session_state[PAGE_KEY] = key
    return arrived


def escape_markdown(text: object) -> str:
    """``text`` with every Markdown-active character escaped, so user text shows as typed."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


@contextmanager
def guard() -> Iterator[None]:
    """Show the errors ``core`` raises as ``st.error`` / ``st.info`` and stop the page cleanly.

    Bad checkpoints, missing MNIST data and unreadable images are expected states, not bugs; every
    page wraps its body in ``with shell.guard():`` so they never surface as a traceback. It also
    warns once about every model that could not be loaded (the others stay usable).
    """
    try:
        store = loaders.model_store()
        if store.predictor is None:
            raise CheckpointError(" ".join(store.errors.values()) or "No model was loaded.")
        for message in store.errors.values():
            st.warning(
                f"**Model unavailable.** {escape_markdown(message)}", icon=":material/warning:"
            )
        yield
    except CheckpointError as error:
        st.error(
            f"**{loaders.failure_title(error)}** {escape_markdown(error)}\n\nRestore the "
            "`checkpoints/` folder from git or retrain with `python scripts/train_all.py`.",
            icon=":material/error:",
        )
        st.stop()
    except DataUnavailableError as error:
        st.info(
            f"**The MNIST test images are not available.** {escape_markdown(error)}",
            icon=":material/cloud_off:",
        )
        st.stop()
    except InvalidImageError as error:
        st.error(f"**This image cannot be read.** {escape_markdown(error)}")
        st.stop()
