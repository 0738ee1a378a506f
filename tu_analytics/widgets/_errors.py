"""Errors raised in widget callbacks, shown under the widget instead of in the kernel log.

An exception in an ``observe`` handler or in an update pushed by the live pump would otherwise
end up only in the kernel's log, where a notebook user never sees it. :class:`ErrorBox` is a
small ``ipywidgets.HTML`` placed under a view; :meth:`ErrorBox.guard` wraps a callback so its
exceptions land there. HTML rather than ``ipywidgets.Output``: a trait assignment reaches the
frontend from any context, while ``Output`` capture from async tasks or threads is unreliable.
"""

from __future__ import annotations

import functools
import html
import logging
import traceback
from collections import deque
from collections.abc import Callable
from typing import ParamSpec

import ipywidgets

__all__ = ["ErrorBox"]

_P = ParamSpec("_P")

_log = logging.getLogger(__name__)


class ErrorBox:
    """Shows the most recent callback errors (newest first) in a hidden-when-empty HTML box."""

    def __init__(self, *, keep: int = 3, frames: int = 8) -> None:
        self._frames = frames
        self._entries: deque[tuple[str, str, int]] = deque(maxlen=keep)
        self.count = 0
        """Errors shown since creation (or the last :meth:`clear`)."""
        self.widget = ipywidgets.HTML(value="", layout=ipywidgets.Layout(display="none"))

    @property
    def messages(self) -> list[str]:
        """One-line summaries of the errors on display, newest first."""
        return [summary for summary, _, _ in self._entries]

    def show(self, error: BaseException, *, context: str = "") -> None:
        """Add ``error`` to the box (and, at debug level, to this module's logger)."""
        _log.debug("error in %s", context or "widget callback", exc_info=error)
        where = f" in {context}" if context else ""
        summary = f"{type(error).__name__}{where}: {error}"
        tb = "".join(
            traceback.format_exception(type(error), error, error.__traceback__, limit=-self._frames)
        )
        if self._entries and self._entries[0][0] == summary:
            # The same failure on every live tick: count it rather than flood the box.
            self._entries[0] = (summary, tb, self._entries[0][2] + 1)
        else:
            self._entries.appendleft((summary, tb, 1))
        self.count += 1
        self._render()

    def clear(self) -> None:
        self._entries.clear()
        self.count = 0
        self._render()

    def guard(self, fn: Callable[_P, object], *, context: str) -> Callable[_P, None]:
        """Wrap a callback so an exception it raises is shown here rather than lost."""

        @functools.wraps(fn)
        def guarded(*args: _P.args, **kwargs: _P.kwargs) -> None:
            try:
                fn(*args, **kwargs)
            except Exception as exc:
                self.show(exc, context=context)

        return guarded

    def _render(self) -> None:
        if not self._entries:
            self.widget.value = ""
            self.widget.layout.display = "none"
            return
        parts = [
            '<div style="border-left:4px solid #d62728;background:#fff4f4;'
            'padding:4px 8px;margin:4px 0;font-size:12px">'
        ]
        for summary, tb, repeats in self._entries:
            times = f" (×{repeats})" if repeats > 1 else ""
            parts.append(
                f'<div style="color:#a00;font-weight:600">{html.escape(summary)}{times}</div>'
                f"<details><summary>traceback</summary>"
                f'<pre style="white-space:pre-wrap;font-size:11px">{html.escape(tb)}</pre>'
                f"</details>"
            )
        parts.append("</div>")
        with self.widget.hold_sync():
            self.widget.value = "".join(parts)
            self.widget.layout.display = ""
