"""Loading plugins: the modules named by a ``persona_bench.*`` entry-point group register what
they define when imported (methods, steering modules, metrics, data loaders)."""
from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Container, Iterable

from .errors import ConfigError

# the entry-point groups; each names modules that register what they define when imported
METHOD_ENTRY_POINT_GROUP = "persona_bench.methods"  # methods (and the steering families they use)
STEERER_ENTRY_POINT_GROUP = "persona_bench.steerers"  # steering families (a saved module loads without its method)
METRIC_ENTRY_POINT_GROUP = "persona_bench.metrics"
LOADER_ENTRY_POINT_GROUP = "persona_bench.loaders"  # data sources (--data KIND:PATH)


def plugins(group: str, name: str | None = None) -> tuple[EntryPoint, ...]:
    """The installed entry points of ``group`` (only the one called ``name`` when given)."""
    return tuple(entry_points(group=group) if name is None else entry_points(group=group, name=name))


def load_plugins(entries: Iterable[EntryPoint], what: str, skip: Container[str] = (), error: type[Exception] = ConfigError) -> None:
    """Import each entry point's module but those named in ``skip`` (registered already); a broken
    one stops with one line naming it (``what``: how the message calls it, e.g. "metric plugin")."""
    for entry in entries:
        if entry.name in skip:
            continue
        try:
            entry.load()
        except Exception as exc:  # a broken plugin must say which one it is
            raise error(f"{what} {entry.name!r} ({entry.value}) failed to load: {type(exc).__name__}: {exc}") from None
