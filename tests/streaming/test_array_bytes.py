"""Counting the NumPy memory a prepared avatar holds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streaming.array_bytes import array_bytes


@dataclass(frozen=True, slots=True)
class Rig:
    maps: tuple[np.ndarray, np.ndarray]
    scale: float


@dataclass(frozen=True)
class Avatar:
    canvas: np.ndarray
    crop: np.ndarray
    rigs: list[Rig]
    named: dict[str, np.ndarray]


def test_arrays_are_found_through_dataclasses_and_containers_and_counted_once() -> None:
    canvas = np.zeros((100, 100, 3), np.uint8)
    maps = (np.zeros((10, 10), np.float32), np.zeros((10, 10), np.float32))
    avatar = Avatar(
        canvas=canvas,
        crop=canvas[10:20, 10:20],  # a view: the canvas's memory, already counted
        rigs=[Rig(maps, 1.0), Rig(maps, 2.0)],  # the same arrays twice
        named={"mask": np.ones(7, np.bool_)},
    )
    assert array_bytes(avatar) == canvas.nbytes + 2 * 400 + 7


def test_a_value_without_arrays_holds_none() -> None:
    assert array_bytes(Rig((np.zeros(0), np.zeros(0)), 1.0)) == 0
    assert array_bytes("a string") == 0
