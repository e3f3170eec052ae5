"""Checking a component against its contract by looking at its members, never by calling them.

A generator is a torch module and calling one costs a forward pass; the members say enough to
refuse a plugin that forgot one, with an error naming what is missing.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

from ganpipe.contracts.protocols import Discriminator, Generator, StyleEncoder

# Contracts whose components must be torch modules (they are moved, saved and trained).
_MODULES = (Generator, Discriminator, StyleEncoder)
_PROTOCOL_BASES = {"Protocol", "Generic", "object"}
_DUNDER_MEMBERS = {"__call__", "__iter__"}  # the special methods a contract may ask for


@cache
def members(contract: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(attributes, methods)`` a protocol asks for, its bases' included."""
    attributes: list[str] = []
    methods: list[str] = []
    for base in reversed(contract.__mro__):
        if base.__name__ in _PROTOCOL_BASES or not getattr(base, "_is_protocol", False):
            continue
        attributes += [a for a in base.__dict__.get("__annotations__", {}) if a not in attributes]
        methods += [
            n
            for n, v in vars(base).items()
            if callable(v) and (n in _DUNDER_MEMBERS or not n.startswith("_")) and n not in methods
        ]
    return tuple(attributes), tuple(methods)


def missing(obj: Any, contract: type) -> list[str]:
    """The members of ``contract`` that ``obj`` lacks (a method must be callable), and
    ``torch.nn.Module`` when the contract asks for a module and ``obj`` is none. Never calls
    anything on ``obj``."""
    attributes, methods = members(contract)
    lacking = [a for a in attributes if not hasattr(obj, a)]
    lacking += [m for m in methods if not callable(getattr(obj, m, None))]
    if any(base in _MODULES for base in contract.__mro__):
        torch = sys.modules.get("torch")  # not imported yet: nothing can be a module
        if torch is None or not isinstance(obj, torch.nn.Module):
            lacking.append("torch.nn.Module")
        elif "forward" not in lacking and type(obj).forward is torch.nn.Module.forward:
            lacking.append("forward")  # nn.Module's placeholder, which only raises
    return lacking


def supports(obj: Any, contract: type) -> bool:
    """Whether ``obj`` has every member of ``contract``: how stages ask for an optional
    capability, e.g. ``supports(loss, DiscriminatorPenalty)`` or
    ``supports(generator, ConditionalGenerator)``."""
    return not missing(obj, contract)


def style_embedding_dim(generator: Any) -> int:
    """The continuous style code a generator takes (``Generator``): 0 when it takes none."""
    return int(getattr(generator, "style_embedding_dim", 0) or 0)
