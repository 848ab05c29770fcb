"""Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`) as numbers, without the kubernetes library.

The grammar is Kubernetes' own (k8s.io/apimachinery/pkg/api/resource): a signed decimal number,
then a binary suffix (Ki … Ei), a decimal one (n, u, m, k, M … E) or an exponent (e3, E-2).
"""

from __future__ import annotations

import re
from decimal import Decimal

BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?")


def parse_quantity(text: str) -> Decimal:
    """The quantity's value; ValueError when `text` is not one."""
    match = QUANTITY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number, suffix = Decimal(match[1]), match[2] or ""
    if suffix in BINARY:
        return number * Decimal(1024) ** BINARY[suffix]
    if suffix in DECIMAL:
        return number.scaleb(DECIMAL[suffix])
    return number.scaleb(int(suffix[1:]))
