"""npm's semver ranges (`engines.node`), for release versions: `||`, hyphen ranges, `^`, `~`, x-ranges, comparators.

    accepts("^18.17 || >=20", (20, 11, 1)) -> True
"""

from __future__ import annotations

import re

Version = tuple[int, int, int]
Constraint = tuple[str, Version]
PARTIAL = r"v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:[-+][0-9A-Za-z.-]*)?"
COMPARATOR = re.compile(r"(<=|>=|<|>|=|\^|~>?)?\s*" + PARTIAL)


class RangeError(ValueError):
    """Not a range npm would read."""


def accepts(text: str, version: Version) -> bool:
    return any(all(_holds(c, version) for c in constraints) for constraints in parse(text))


def parse(text: str) -> list[list[Constraint]]:
    return [_range(part.strip()) for part in text.split("||")]


def _range(text: str) -> list[Constraint]:
    if text in ("", "*", "x", "X", "latest"):
        return []
    hyphen = re.fullmatch(rf"({PARTIAL})\s+-\s+({PARTIAL})", text)
    if hyphen:
        low, high = _partial(hyphen[1]), _partial(hyphen[5])
        return [(">=", _floor(low)), *_upper(high, inclusive=True)]
    constraints: list[Constraint] = []
    text = re.sub(r"(<=|>=|<|>|=|\^|~>?)\s+", r"\1", text)
    for token in text.split():
        match = COMPARATOR.fullmatch(token)
        if not match:
            raise RangeError(token)
        constraints.extend(_comparator(match[1] or "", _partial(token[len(match[1] or ""):])))
    return constraints


def _partial(text: str) -> list[int | None]:
    match = re.fullmatch(PARTIAL, text.strip())
    if not match:
        raise RangeError(text)
    parts: list[int | None] = []
    for part in match.groups():
        if part is None or part in "xX*":
            break
        parts.append(int(part))
    return parts


def _floor(parts: list[int | None]) -> Version:
    return tuple((list(parts) + [0, 0, 0])[:3])  # type: ignore[return-value]


def _bump(parts: list[int | None]) -> Version:
    """The first version above everything `parts` (a partial version) covers."""
    head = [int(p) for p in parts]
    head[-1] += 1
    return _floor(head)  # type: ignore[arg-type]


def _upper(parts: list[int | None], inclusive: bool) -> list[Constraint]:
    if not parts:
        return []
    if len(parts) == 3:
        return [("<=" if inclusive else "<", _floor(parts))]
    return [("<", _bump(parts))] if inclusive else [("<", _floor(parts))]


def _comparator(op: str, parts: list[int | None]) -> list[Constraint]:
    if op in ("", "="):
        return [] if not parts else [(">=", _floor(parts)), *_upper(parts, inclusive=True)]
    if op.startswith("~"):
        return [] if not parts else [(">=", _floor(parts)), ("<", _bump(parts[:2] if len(parts) > 1 else parts))]
    if op == "^":
        if not parts:
            return []
        significant = next((i for i, part in enumerate(parts) if part != 0), len(parts) - 1)
        return [(">=", _floor(parts)), ("<", _bump(parts[: significant + 1]))]
    if not parts:
        return [("<", (0, 0, 0))] if op in ("<", ">") else []
    if op == ">":
        return [(">=", _bump(parts))] if len(parts) < 3 else [(">", _floor(parts))]
    if op == ">=":
        return [(">=", _floor(parts))]
    if op == "<":
        return [("<", _floor(parts))]
    return _upper(parts, inclusive=True)  # <=


def _holds(constraint: Constraint, version: Version) -> bool:
    op, bound = constraint
    return {"<": version < bound, "<=": version <= bound, ">": version > bound, ">=": version >= bound}[op]
