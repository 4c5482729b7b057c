"""The registry of recourse methods: name -> callable(factuals, setup) -> recourses.

A method takes encoded factuals (n, d) float32 and a `genre.evaluation.protocol.ProtocolSetup`, and returns encoded
recourses (n, d), row i for factual i. Other modules add theirs with `register_method("genre", fn)` or the
decorator form; `get_method("pkg.module:function")` also works for a method nobody registered.
"""
from __future__ import annotations

import importlib
from typing import Callable

import numpy as np

from genre.evaluation.baselines import nearest_neighbour_recourse, wachter_recourse

RecourseMethod = Callable[[np.ndarray, object], np.ndarray]

METHODS: dict[str, RecourseMethod] = {
    "nnr": nearest_neighbour_recourse,
    "wachter": wachter_recourse,
}

# What a method must load or fit before it is timed (GenRe's generator), by method name.
PREPARATIONS: dict[str, Callable[[object], None]] = {}

# Modules imported on a lookup miss, so their own register_method calls run (missing ones are skipped).
PROVIDERS: list[str] = ["genre.evaluation.genre_methods", "genre.bench.peers_dice"]


def register_method(name: str, fn: RecourseMethod | None = None, *, prepare: Callable[[object], None] | None = None):
    """Register `fn` under `name`; without `fn`, return a decorator. `prepare(setup)`, when given, loads or fits
    what the method needs so that `prepare_method` can run it before a clock starts."""
    def add(f: RecourseMethod) -> RecourseMethod:
        METHODS[name] = f
        if prepare is not None:
            PREPARATIONS[name] = prepare
        return f

    return add(fn) if fn is not None else add


def prepare_method(name: str, setup) -> None:
    """Load or fit what method `name` needs (nothing for most methods); look the method up first."""
    if name in PREPARATIONS:
        PREPARATIONS[name](setup)


def get_method(name: str) -> RecourseMethod:
    if name in METHODS:
        return METHODS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)
    for module in PROVIDERS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
        if name in METHODS:
            return METHODS[name]
    raise KeyError(f"unknown recourse method '{name}': known {sorted(METHODS)} (or give 'module:function')")
