"""Plugin loading and the component registry.

The manager is built by a function, never at import: the built-ins first, then every installed
``ganpipe`` entry point, then the dotted modules named in ``plugins:``. Components are then looked
up by kind and name with errors that list what is available and which plugin supplied it.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import pluggy

from ganpipe import contracts, hookspecs
from ganpipe.errors import ConfigError, GanpipeError, PluginError

BUILTIN_PLUGIN = "ganpipe.builtin"

T = TypeVar("T")

# Each component kind's hook, config key and contract: one record each, in ganpipe.contracts.
KINDS = contracts.KINDS


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    factory: Callable[..., Any]  # a contracts.ComponentFactory
    plugin: str


def build_plugin_manager(extra_modules: list[str] | None = None) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("ganpipe")
    pm.add_hookspecs(hookspecs)
    pm.register(importlib.import_module(BUILTIN_PLUGIN), name=BUILTIN_PLUGIN)
    try:
        pm.load_setuptools_entrypoints("ganpipe")
    except Exception as exc:  # a broken installed plugin must not look like a ganpipe bug
        raise PluginError(
            f"an installed plugin failed to load: {type(exc).__name__}: {exc}",
            where="entry points of group 'ganpipe'",
            fix="upgrade or uninstall the plugin package (pip list shows it)",
        ) from None
    for dotted in extra_modules or []:
        try:
            module = importlib.import_module(dotted)
        except Exception as exc:
            raise PluginError(
                f"cannot import plugin module {dotted!r}: {type(exc).__name__}: {exc}",
                where="plugins",
                fix="install the package that provides it, or fix the dotted name",
            ) from None
        if not pm.is_registered(module):  # already loaded through its entry point
            pm.register(module, name=dotted)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin {exc.plugin!r} implements a hook ganpipe does not have: {exc}",
            fix="check the hook name against ganpipe/hookspecs.py",
        ) from None
    return pm


class Registry:
    """Every registered component, by kind and name, with the plugin that supplied it."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self._components: dict[str, dict[str, Component]] = {}
        # Name installed plugins after their distribution, which is what users pip-installed.
        self._labels = {
            pm.get_name(plugin): f"{pm.get_name(plugin)} ({dist.project_name} {dist.version})"
            for plugin, dist in pm.list_plugin_distinfo()
        }

    def _collect(self, kind: str) -> dict[str, Component]:
        if kind in self._components:
            return self._components[kind]
        hook_name = KINDS[kind].hook
        found: dict[str, Component] = {}
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            plugin = self._labels.get(impl.plugin_name, impl.plugin_name)
            try:
                mapping = impl.function()
            except Exception as exc:
                raise PluginError(
                    f"plugin {plugin!r} raised in {hook_name}: {type(exc).__name__}: {exc}",
                    where=hook_name,
                ) from None
            if mapping is None:
                continue
            if not isinstance(mapping, Mapping):
                raise PluginError(
                    f"plugin {plugin!r} returned {type(mapping).__name__} from {hook_name}, "
                    "expected a mapping of name to factory",
                    where=hook_name,
                )
            for name, factory in mapping.items():
                if name in found:
                    raise PluginError(
                        f"{kind} {name!r} is registered twice: by {found[name].plugin!r} "
                        f"and by {plugin!r}",
                        where=hook_name,
                        fix="uninstall one of the plugins, or have one rename its component",
                    )
                if not callable(factory):
                    raise PluginError(
                        f"plugin {plugin!r} registered {kind} {name!r} with a "
                        f"{type(factory).__name__}, not a factory",
                        where=hook_name,
                    )
                found[name] = Component(kind, name, factory, plugin)
        self._components[kind] = found
        return found

    def names(self, kind: str) -> list[str]:
        return sorted(self._collect(kind))

    def all(self) -> list[Component]:
        return [c for kind in KINDS for c in sorted(self._collect(kind).values(), key=_by_name)]

    def get(self, kind: str, name: str) -> Component:
        components = self._collect(kind)
        if name not in components:
            key = KINDS[kind].config_key
            available = ", ".join(f"{c.name} ({c.plugin})" for c in components.values())
            raise ConfigError(
                f"unknown {kind.replace('_', ' ')} {name!r}; available: {available or 'none'}",
                where=key,
                fix="pick one of the available names, or install the plugin that provides it",
            )
        return components[name]

    def create(self, kind: str, name: str, *, config_key: str | None = None, **kwargs: Any):
        """Call a component's factory and check what it built against its kind's contract
        (``ganpipe.contracts.CONTRACTS``); a bad option becomes a config error naming the key,
        any other failure a plugin error naming the plugin and its hook."""
        component = self.get(kind, name)
        try:
            built = component.factory(**kwargs)
        except GanpipeError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{kind.replace('_', ' ')} {name!r} ({component.plugin}) rejected its options: "
                f"{exc}",
                where=config_key or KINDS[kind].config_key,
            ) from None
        except Exception as exc:
            raise PluginError(
                f"{kind.replace('_', ' ')} {name!r} ({component.plugin}) failed to build: "
                f"{type(exc).__name__}: {exc}",
                where=KINDS[kind].hook,
                fix="fix or uninstall the plugin that provides it ('ganpipe plugins' lists them)",
            ) from exc
        self.check(kind, name, built)
        return built

    def check(self, kind: str, name: str, component: Any) -> None:
        """Refuse a built component that lacks a member of its kind's protocol, once, when it
        is created: the error names the component, its plugin, the hook and what is missing,
        rather than an ``AttributeError`` from deep inside a stage. Members are looked at,
        never called. Optional capabilities are not required (``contracts.supports``)."""
        contract = KINDS[kind].contract
        lacking = contracts.missing(component, contract)
        if lacking:
            raise self.fault(
                kind,
                name,
                f"built a {type(component).__name__} that lacks {', '.join(lacking)}: every "
                f"{kind.replace('_', ' ')} must provide what ganpipe.contracts."
                f"{contract.__name__} lists",
            )

    def notify(self, hook: str, **kwargs: Any) -> list:
        """Call an event hook; an exception from a plugin becomes a ``PluginError`` naming the
        plugin and the hook, so an observer's bug is not taken for ganpipe's."""
        try:
            return getattr(self.pm.hook, hook)(**kwargs)
        except GanpipeError:
            raise
        except Exception as exc:
            plugin = self.blame(exc) or "unknown"
            raise PluginError(
                f"plugin {plugin!r} raised in {hook}: {type(exc).__name__}: {exc}",
                where=hook,
                fix="fix or uninstall the plugin ('ganpipe plugins' lists them), or remove it "
                "from plugins:",
            ) from exc

    def fault(self, kind: str, name: str, problem: str) -> PluginError:
        """The error for a component that misbehaved: it names the component, the plugin that
        supplied it and its registration hook, so a plugin's bug is not taken for ganpipe's.
        Every stage reports plugin faults through this (or ``call``)."""
        plugin = self.get(kind, name).plugin
        return PluginError(
            f"{kind.replace('_', ' ')} {name!r} ({plugin}) {problem}",
            where=KINDS[kind].hook,
            fix="fix or replace the plugin ('ganpipe plugins' lists where each component "
            "comes from), or choose another component in the config",
        )

    def call(self, kind: str, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on behalf of component ``name``: ganpipe's own errors pass
        through, anything else becomes ``fault(kind, name, "failed: ...")``."""
        try:
            return fn(*args, **kwargs)
        except GanpipeError:
            raise
        except Exception as exc:
            raise self.fault(kind, name, f"failed: {type(exc).__name__}: {exc}") from exc

    def blame(self, exc: BaseException) -> str | None:
        """The plugin whose code raised ``exc``: the innermost traceback frame in a registered
        plugin's module (or, failing that, in its package). None when no plugin code is on the
        traceback."""
        modules: dict[str, str] = {}
        for name, plugin in self.pm.list_name_plugin():
            module = getattr(plugin, "__name__", None) or type(plugin).__module__
            modules[module] = self._labels.get(name, name)
        frames = [f.f_globals.get("__name__", "") for f, _ in traceback.walk_tb(exc.__traceback__)]
        for module in reversed(frames):
            if module in modules:
                return modules[module]
        for module in reversed(frames):
            for owner, label in modules.items():
                package = owner if _is_package(owner) else owner.rpartition(".")[0]
                if package and (module == package or module.startswith(package + ".")):
                    return label
        return None


def _is_package(module: str) -> bool:
    try:
        return hasattr(importlib.import_module(module), "__path__")
    except ImportError:
        return False


def _by_name(c: Component) -> str:
    return c.name


def load_registry(config) -> Registry:
    """Plugin manager + registry for a validated config; runs the ``ganpipe_configure`` hook."""
    registry = Registry(build_plugin_manager(config.plugins))
    registry.notify("ganpipe_configure", config=config)
    return registry
