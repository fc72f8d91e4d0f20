"""How many bytes of NumPy arrays a value holds: what a prepared avatar made of dataclasses and arrays costs."""

from __future__ import annotations

import dataclasses

import numpy as np


def array_bytes(value: object) -> int:
    """Bytes of the NumPy arrays reachable from `value` through dataclass fields, tuples, lists and dict values.
    An array reached twice, or through views of it, is counted once, at its full size."""
    counted: dict[int, int] = {}
    seen: set[int] = set()
    pending = [value]
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            owner = item
            while isinstance(owner.base, np.ndarray):
                owner = owner.base
            counted[id(owner)] = owner.nbytes
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            pending.extend(getattr(item, field.name) for field in dataclasses.fields(item))
        elif isinstance(item, tuple | list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
    return sum(counted.values())
