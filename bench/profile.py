"""Where the server's CPU goes: py-spy's raw (collapsed) stacks summed by layer.

``py-spy record --gil --format raw`` writes one line per distinct stack, frames from
the root to the leaf separated by ``;``, then the sample count. Each sample is put in
the layer of its innermost frame that belongs to a known layer (its "self" layer):
the leaf in ``sqlalchemy`` is database time, the leaf in ``uvicorn`` HTTP time, and a
leaf in the standard library counts for the nearest known frame above it (``ssl.py``
under the event loop is TLS; ``threading.py`` under anyio is the threadpool hand-off).

Run: ``.venv/bin/python -m bench.profile server.raw`` (``bench.enroll --py-spy`` writes
one per worker count).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["LAYERS", "classify", "shares", "main"]

#: (layer, pattern on "function (file:line)"), tried in order on each frame, leaf first.
LAYERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(pattern)) for name, pattern in (
    ("tls", r"\((ssl\.py|asyncio/sslproto\.py)"),
    ("http: uvicorn", r"\((uvicorn|h11|httptools)/"),
    ("http: starlette", r"\(starlette/"),
    ("http: app middleware", r"\(bootstrap/web/(middleware|problems)\.py"),
    ("threadpool", r"\((anyio|concurrent/futures)/"),
    ("database", r"\((sqlalchemy|sqlmodel|psycopg|psycopg_binary|psycopg_pool)/"),
    ("crypto", r"\((cryptography|asn1crypto)/"),
    ("pki", r"\(pki/"),
    ("audit", r"\(bootstrap/services/audit"),
    ("app: dm/ddf", r"\(bootstrap/dm/"),
    ("app: services", r"\(bootstrap/services/"),
    ("app: web handlers", r"\(bootstrap/web/"),
    ("app: other", r"\(bootstrap/"),
    ("event loop", r"\(asyncio/"),
))


def classify(frames: Sequence[str]) -> str:
    """The layer of one stack: its innermost frame in a known layer, else ``other``."""
    for frame in reversed(frames):
        for name, pattern in LAYERS:
            if pattern.search(frame):
                return name
    return "other"


def shares(lines: Iterable[str]) -> tuple[Counter[str], int]:
    """Samples per layer, and the total, from py-spy raw lines."""
    counts: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        counts[classify(stack.split(";"))] += int(count)
        total += int(count)
    return counts, total


def table(path: Path) -> list[tuple[str, int, float]]:
    """(layer, samples, share) rows, largest first, with an ``http total`` row."""
    counts, total = shares(path.read_text().splitlines())
    rows = [(name, n, n / total if total else 0.0) for name, n in counts.most_common()]
    http = sum(n for name, n in counts.items() if name.startswith("http") or name in ("tls", "event loop"))
    rows.append(("= HTTP stack (uvicorn, starlette, middleware, TLS, loop)", http, http / total if total else 0.0))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", nargs="+", type=Path, help="py-spy --format raw files")
    args = parser.parse_args(argv)
    for path in args.raw:
        print(f"# {path}")
        for name, samples, share in table(path):
            print(f"{name:<60} {samples:>7} {share:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
