"""The bench scenarios: one module each, found by :func:`registry`.

A scenario module defines ``SCENARIO = Scenario(...)``: its name, its
place in the default order, the function that runs it (taking the run's
:class:`context.Bench`, returning the figures saved under its name in
results.json), and optionally its own command-line options, their
``--quick`` values and a check of them. Adding a scenario is adding a
module here; ``bench/report.py`` renders what it returns.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from context import Bench


@dataclass(frozen=True)
class Scenario:
    name: str
    order: int  # place in the default (all scenarios) run
    run: Callable[[Bench], dict[str, Any]]
    add_options: Callable[[argparse._ArgumentGroup], None] | None = None
    # dest -> value for --quick: a smoke of the harness, not a measurement.
    quick: Mapping[str, Any] = field(default_factory=dict)
    # The options' check: an error message, or None when they are fine.
    check: Callable[[argparse.Namespace], str | None] | None = None
    needs_py_spy: bool = False

    @property
    def summary(self) -> str:
        """The first paragraph of the scenario module's docstring, on one line."""
        doc = sys.modules[self.run.__module__].__doc__ or self.name
        return " ".join(doc.strip().split("\n\n")[0].split())


@cache
def registry() -> tuple[Scenario, ...]:
    """Every scenario module's ``SCENARIO``, in the default order."""
    found: dict[str, Scenario] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        scenario = getattr(module, "SCENARIO", None)
        if not isinstance(scenario, Scenario):
            raise TypeError(f"{module.__name__} defines no SCENARIO = Scenario(...)")
        if scenario.name in found:
            raise ValueError(f"scenario {scenario.name!r} is defined twice")
        found[scenario.name] = scenario
    ordered = sorted(found.values(), key=lambda s: s.order)
    if len({s.order for s in ordered}) != len(ordered):
        raise ValueError("two scenarios share an order; give each its own place")
    return tuple(ordered)


def by_name() -> dict[str, Scenario]:
    return {s.name: s for s in registry()}
