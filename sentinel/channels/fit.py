"""Making a message fit a service's size limit without losing what matters.

Every service caps a message (Discord 2,000 characters, WeCom 2,048 or 4,096
bytes, Telegram 4,096 UTF-16 units, Lark 20 KB...), and SwanLab's plugins
send a long traceback whole, so the one attempt fails. A channel here
renders its message from parts and lets ``fit_message`` drop what matters
least first: the *start* of the error tail (a traceback's last line says
what went wrong), then the facts from the last one up. The headline is
never dropped; each layout caps its own fields so that the headline and a
few facts always fit.

Sizes are measured on what the service counts (``utf8_len``,
``utf16_len``, ``len``), on the final rendering (escaping included).
Stdlib only.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, TypeVar

# render(error tail or None, number of facts kept) -> the whole message
Render = Callable[[Optional[str], int], str]
Measure = Callable[[str], int]
T = TypeVar("T")

ELLIPSIS = "…"


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def fit_message(
    render: Render, tail: Optional[str], fact_count: int, limit: int, measure: Measure = len
) -> str:
    """The fullest rendering of the message within ``limit``.

    The error tail is shortened from its start (kept: its end, after an
    ellipsis), down to its last line; then facts are dropped from the last;
    then the tail goes. What remains is the headline with the facts that fit.
    """
    full = render(tail, fact_count)
    if measure(full) <= limit:
        return full
    if tail:
        last_line = tail.rstrip().rsplit("\n", 1)[-1]
        # Keep as many trailing characters of the tail as fit (binary search).
        low, high, best = len(last_line), len(tail) - 1, None
        while low <= high:
            keep = (low + high) // 2
            text = render(ELLIPSIS + tail[-keep:], fact_count)
            if measure(text) <= limit:
                best, low = text, keep + 1
            else:
                high = keep - 1
        if best is not None:
            return best
        shortest = ELLIPSIS + last_line if len(last_line) < len(tail) else last_line
        for kept in range(fact_count - 1, -1, -1):
            text = render(shortest, kept)
            if measure(text) <= limit:
                return text
    for kept in range(fact_count - 1, -1, -1):
        text = render(None, kept)
        if measure(text) <= limit:
            return text
    return render(None, 0)  # the layout's caps keep this within every limit in use


def how_many_fit(
    render: Callable[[Sequence[T]], str], items: Sequence[T], limit: int, measure: Measure = len
) -> int:
    """How many of ``items`` (from the first, at least one) one rendering
    ``render(items[:n])`` can carry within ``limit``."""
    low, high, best = 2, len(items), 1
    while low <= high:
        count = (low + high) // 2
        if measure(render(items[:count])) <= limit:
            best, low = count, count + 1
        else:
            high = count - 1
    return best


def cut(text: str, limit: int, measure: Measure = len) -> str:
    """``text`` cut at its end to ``limit`` (an ellipsis marks the cut)."""
    if measure(text) <= limit:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[:middle] + ELLIPSIS) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low] + ELLIPSIS
