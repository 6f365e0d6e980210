"""The classes that a shared file may name, and the only way such a file's ``_target_`` is built.

Checkpoints, predicted targets and zoos are what people share. A ``_target_`` read from such a
file must never pick an arbitrary callable (``pathlib.Path.touch``, ``os.system``, ...), so files
are rebuilt only through :func:`build_trusted`: every ``_target_`` in the node, nested ones
included, must name a class registered here for the expected *kind*.

Built-in classes register themselves with ``@register("family")`` (etc.) where they are defined.
A user's own classes register the same way in their code, or through an installed package's entry
point in the group ``hyperpred.plugins`` (loading an installed package is code the user chose to
install, not code from the file). ``torch.nn`` layers count as registered ``module`` classes.

Hydra configs a user writes are code they trust and keep using ``hydra.utils.instantiate``.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from hyperpred.errors import ConfigError

T = TypeVar("T")

#: What may be named: a target family, a task, a conditioning feature, a predictor, an ``nn.Module``
#: a family wraps (``ModuleFamily``), an evaluation baseline.
KINDS = ("family", "task", "feature", "predictor", "module", "baseline")
ENTRY_POINT_GROUP = "hyperpred.plugins"
#: Packages whose import registers the built-in classes.
_BUILTIN_PACKAGES = ("hyperpred.targets", "hyperpred.tasks", "hyperpred.features", "hyperpred.predictors")

_registry: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}
_loaded = False


class UntrustedTargetError(ConfigError):
    """A file names a ``_target_`` that is not a registered class of the kind expected there."""


def class_path(cls: type) -> str:
    """The dotted path Hydra writes as ``_target_`` for ``cls``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"registry kind must be one of {list(KINDS)}, got {kind!r}")


def register(kind: str, *aliases: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: files may name this class (by its dotted path, or an alias) as a ``kind``."""
    _check_kind(kind)

    def deco(cls: type[T]) -> type[T]:
        if not isinstance(cls, type):
            raise TypeError(f"register({kind!r}) decorates classes, got {cls!r}")
        for name in (class_path(cls), *aliases):
            _registry[kind][name] = cls
        return cls

    return deco


def register_class(kind: str, cls: type, *aliases: str) -> type:
    """Function form of :func:`register`, for classes defined elsewhere."""
    return register(kind, *aliases)(cls)


def _load_plugins() -> None:
    """Import the built-in packages and the installed plugins once, so their classes are known."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in _BUILTIN_PACKAGES:
        importlib.import_module(package)
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def registered(kind: str) -> dict[str, type]:
    """Every name a file may use for ``kind`` (a copy)."""
    _check_kind(kind)
    _load_plugins()
    return dict(_registry[kind])


def _torch_layer(target: str) -> type | None:
    """``torch.nn.<Layer>`` names a layer class: building one runs no foreign code."""
    prefix = "torch.nn."
    if not target.startswith(prefix) or "." in target[len(prefix) :]:
        return None
    cls = getattr(nn, target[len(prefix) :], None)
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


def _exported_as(target: str, kind: str) -> type | None:
    """A registered class re-exported under another path (``hyperpred.targets.MLPFamily``).

    Only modules already imported are read: resolving a name from a file never imports anything.
    """
    module_name, _, name = target.rpartition(".")
    module = sys.modules.get(module_name)
    cls = getattr(module, name, None) if module is not None else None
    return cls if isinstance(cls, type) and cls in _registry[kind].values() else None


def lookup(kind: str, target: Any, key: str) -> type:
    """The registered class named ``target``; anything else is refused in one line naming ``key``."""
    _check_kind(kind)
    if isinstance(target, str):
        _load_plugins()
        cls = _registry[kind].get(target) or _exported_as(target, kind)
        if cls is None and kind == "module":
            cls = _torch_layer(target)
        if cls is not None:
            return cls
    raise UntrustedTargetError(
        f"{key}={target!r} is not a registered {kind}: a shared file may only name classes registered with "
        f"hyperpred.registry.register({kind!r}) (known: {', '.join(sorted(_registry[kind])) or 'none'})"
    )


#: Hydra's flags that change how a node is called, not what is called: honoured, not refused.
_FLAGS = ("_partial_", "_recursive_", "_convert_")


def _kind_of_nested(kind: str) -> str:
    """A ``_target_`` nested inside a family config is the module it wraps; elsewhere, the same kind."""
    return "module" if kind == "family" else kind


def check_trusted(node: Any, kind: str, key: str) -> None:
    """Refuse a node read from a file unless every ``_target_`` in it is registered (builds nothing)."""
    if isinstance(node, Mapping):
        if "_target_" in node:
            lookup(kind, node["_target_"], f"{key}._target_")
            kind = _kind_of_nested(kind)
        for name, value in node.items():
            if (
                isinstance(name, str)
                and name.startswith("_")
                and name.endswith("_")
                and name not in (*_FLAGS, "_target_")
            ):
                raise UntrustedTargetError(
                    f"{key}.{name}: only _target_, {', '.join(_FLAGS)} and arguments may be read from a file"
                )
            check_trusted(value, kind, f"{key}.{name}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            check_trusted(value, kind, f"{key}[{i}]")
    elif not (node is None or isinstance(node, (bool, int, float, str))):
        raise UntrustedTargetError(f"{key}: a {type(node).__name__} cannot be read from a file (plain data only)")


def build_trusted(node: Mapping[str, Any], kind: str, key: str, partial: bool = False) -> Any:
    """Build a config read from a shared file, as Hydra would, once every ``_target_`` in it is known.

    Every ``_target_``, nested ones included, must be registered (see :func:`check_trusted`);
    nested configs are built bottom-up (as partials where they say ``_partial_: true``) unless the
    node says ``_recursive_: false``, in which case they are passed on as plain dicts.
    """
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise UntrustedTargetError(f"{key} must be a mapping with a _target_, got {type(node).__name__}")
    check_trusted(node, kind, key)
    return _build(node, kind, key, partial)


def _build(node: Mapping[str, Any], kind: str, key: str, partial: bool) -> Any:
    cls = lookup(kind, node["_target_"], f"{key}._target_")
    recursive = node.get("_recursive_", True)
    partial = partial or bool(node.get("_partial_", False))
    kwargs = {
        name: _build_value(value, _kind_of_nested(kind), f"{key}.{name}") if recursive else _plain(value)
        for name, value in node.items()
        if name not in (*_FLAGS, "_target_") and not (partial and value == "???")  # a partial leaves ??? to its caller
    }
    if partial:
        return functools.partial(cls, **kwargs)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}: cannot build {node['_target_']}: {e}") from None


def _build_value(value: Any, kind: str, key: str) -> Any:
    if isinstance(value, Mapping):
        if "_target_" in value:
            return _build(value, kind, key, partial=False)
        return {k: _build_value(v, kind, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_build_value(v, kind, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def build(node: Any, kind: str, key: str, *, from_file: bool, partial: bool = False) -> Any:
    """Build a config node: through :func:`build_trusted` when it was read from a file, else as Hydra does.

    The one switch between the two trust levels: a config the user composed is their own code
    (``hydra.utils.instantiate``, any ``_target_``); a node read from a checkpoint or a predicted
    target's JSON names registered classes only.
    """
    if from_file:
        plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
        return build_trusted(plain, kind, key, partial=partial)
    return instantiate(node, _partial_=True) if partial else instantiate(node)
