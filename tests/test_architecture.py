"""The import structure of hyperpred/, read from the source (ast): layers, no cycles, nothing hidden.

Layers, bottom to top (docs/architecture.md): the foundation (errors, io, registry, ...), then
targets and tasks, then zoo, features and predictors, then the Lightning wiring, then the entry
points. A module may import its own layer or a lower one, never a higher one; features and
predictors never import the zoo (they must work without one, at prediction time). Imports inside
functions count like any other, so a function-local import cannot hide a cycle or a wrong
direction. A new module must be placed in a layer here (the test names it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hyperpred"

#: (layer name, module prefixes); the longest matching prefix decides a module's layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "hyperpred.errors",
            "hyperpred.io",
            "hyperpred.registry",
            "hyperpred.metrics",
            "hyperpred.config_schema",
            "hyperpred.peer_config",
            "hyperpred.support",
            "hyperpred.cli",
            "hyperpred.sweep_guard",
            "hyperpred.wandb_env",
            "hyperpred.tag_logging",
            "hyperpred.mlflow_logger",
            "hyperpred.utils",
            "hyperpred.utils.progress",
            "hyperpred.utils.media",
            "hyperpred.utils.ranks",
        ),
    ),
    ("targets and tasks", ("hyperpred.targets", "hyperpred.tasks", "hyperpred.seeding", "hyperpred.units")),
    (
        "zoo, features and predictors",
        (
            "hyperpred.zoo",
            "hyperpred.features",
            "hyperpred.predictors",
            "hyperpred.symmetry",
            "hyperpred.losses",
            "hyperpred.plots",
        ),
    ),
    ("evaluation", ("hyperpred.evaluation",)),
    ("lit", ("hyperpred.lit", "hyperpred.factory", "hyperpred.run.checkpoint")),
    (
        "entry points",
        (
            "hyperpred.api",
            "hyperpred.train",
            "hyperpred.evaluate",
            "hyperpred.report",
            "hyperpred.console",
            "hyperpred.extras",
            "hyperpred.run",
            "hyperpred.zoo.jobs",
            "hyperpred.utils.wandb_run",
        ),
    ),
]
#: Packages that must not import the zoo (they run at prediction time, where there is none).
NO_ZOO = ("hyperpred.features", "hyperpred.predictors")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The hyperpred module an imported name refers to (``hyperpred.zoo.spec.TrainRecipe`` → ``hyperpred.zoo.spec``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for every hyperpred import of ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    local_lines = {
        n.lineno
        for f in ast.walk(tree)
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
        for n in ast.walk(f)
        if isinstance(n, (ast.Import, ast.ImportFrom))
    }
    is_package = MODULES[module].name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("hyperpred.") and (target := _resolve(name)) and target not in ("hyperpred", module):
                out.append((target, node.lineno, node.lineno in local_lines))
    return out


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return best[0] if best else None


GRAPH = {m: imports(m) for m in MODULES if m != "hyperpred"}


def test_every_module_has_a_layer():
    assert not [m for m in GRAPH if layer_of(m) is None], "place new modules in LAYERS (and docs/architecture.md)"


def test_no_import_from_a_lower_layer_to_a_higher_one():
    wrong = [
        f"{m}:{line} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]}){' inside a function' * local}"
        for m, edges in GRAPH.items()
        for t, line, local in edges
        if layer_of(t) is not None and layer_of(m) is not None and layer_of(t) > layer_of(m)
    ]
    assert not wrong, "\n".join(wrong)


def test_features_and_predictors_never_import_the_zoo():
    wrong = [
        f"{m}:{line} imports {t}"
        for m, edges in GRAPH.items()
        if m.startswith(NO_ZOO)
        for t, line, _ in edges
        if t == "hyperpred.zoo" or t.startswith("hyperpred.zoo.")
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_even_through_function_local_imports():
    def cycle_from(start: str) -> list[str] | None:
        stack, on_path, done = [(start, iter(GRAPH.get(start, [])))], [start], set()
        while stack:
            node, edges = stack[-1]
            nxt = next(edges, None)
            if nxt is None:
                stack.pop(), on_path.pop(), done.add(node)
                continue
            target = nxt[0]
            if target in on_path:
                return [*on_path[on_path.index(target) :], target]
            if target not in done and target in GRAPH:
                stack.append((target, iter(GRAPH[target])))
                on_path.append(target)
        return None

    # a package's __init__ importing its own submodules (re-exports) is how packages work, not a cycle
    cycles = {
        " -> ".join(c)
        for m in GRAPH
        if (c := cycle_from(m)) and not all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(c, c[1:]))
    }
    assert not cycles, "\n".join(sorted(cycles))


@pytest.mark.parametrize("module", ["hyperpred.features.base", "hyperpred.predictors.base", "hyperpred.tasks.base"])
def test_the_checker_sees_imports(module):
    """A guard against a checker that passes because it reads nothing."""
    assert GRAPH[module], module


def test_every_module_imports():
    """A name moved to another module (``from hyperpred.zoo.spec import stable_seed``) fails here, not in a run."""
    import importlib
    import pkgutil

    import hyperpred

    for info in pkgutil.walk_packages(hyperpred.__path__, "hyperpred."):
        importlib.import_module(info.name)
