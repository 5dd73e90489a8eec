"""Import arrows between the package's layers point one way (ARCHITECTURE.md).

The imports are read from the source with ``ast`` (including imports inside
functions and under ``TYPE_CHECKING``), so a lazy import cannot hide an
upward arrow.
"""

import ast
from pathlib import Path

import spikebridge

PKG = Path(spikebridge.__file__).parent


def _imports(path: Path) -> set[str]:
    """Dotted ``spikebridge.*`` modules imported anywhere in ``path``."""
    module = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("spikebridge")}


#: ARCHITECTURE.md's table: an import only ever points to a lower layer (or within its own package).
LAYERS: dict[str, int] = {
    "errors": 0, "config": 0, "_h5": 0, "_h5attrs": 0, "_optional": 0, "_process": 0,
    "ir": 1,
    "snn": 2,
    "importers": 3, "conversion": 3, "datasets": 3, "models": 3,
    "store": 4,
    "engines": 5,
    "analysis": 6, "learning": 6, "export": 6,
    "run": 7,
    "cli": 8,
    "__main__": 9,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def _top(module: str) -> str:
    """The package's top-level folder or module of ``module`` ("" for the root and its attributes)."""
    parts = module.split(".")
    if len(parts) < 2 or not ((PKG / parts[1]).is_dir() or (PKG / f"{parts[1]}.py").exists()):
        return ""
    return parts[1]


def test_every_package_is_in_the_table():
    tops = {_top(m) for m in _modules()} - {""}
    assert tops <= set(LAYERS), sorted(tops - set(LAYERS))


def test_every_import_points_down():
    upward = []
    for module, path in _modules().items():
        src = _top(module)
        if src == "":  # spikebridge/__init__.py: the public API, resolved lazily from every layer
            continue
        for target in _imports(path):
            dst = _top(target)
            if dst in ("", src):
                continue
            if LAYERS[src] == LAYERS[dst] == 0:
                continue  # the base modules among themselves: test_base_modules_import_only_errors
            if dst not in LAYERS or LAYERS[dst] >= LAYERS[src]:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_base_modules_import_only_errors():
    """Layer 0 may use errors.py (the one error root) and nothing else of ours, except _h5 -> _process."""
    allowed = {"errors": set(), "_process": set(), "_h5attrs": set(), "_optional": {"errors"}, "config": {"errors"},
               "_h5": {"errors", "_process", "_h5attrs", ""}}
    for name, ok in allowed.items():
        found = {_top(t) for t in _imports(PKG / f"{name}.py")}
        assert found <= ok, (name, found - ok)


def test_no_import_cycles():
    import networkx as nx

    mods = _modules()
    g = nx.DiGraph()
    for module, path in mods.items():
        for target in _imports(path):
            # "from pkg import name" also yields "pkg.name": keep the targets that are modules
            if target in mods and target != module and "spikebridge" not in (module, target):
                g.add_edge(module, target)
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert cycles == []


def test_only_engines_brian2_imports_brian2():
    offenders = []
    for module, path in _modules().items():
        if module.startswith("spikebridge.engines.brian2"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n == "brian2" or n.startswith("brian2.") for n in names):
                offenders.append(module)
    assert offenders == []


def test_conversion_never_imports_an_engine():
    offenders = {
        str(p.relative_to(PKG)): sorted(m for m in _imports(p) if m.startswith(("spikebridge.engines", "spikebridge.run")))
        for p in (PKG / "conversion").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_conversion_never_imports_analysis():
    offenders = {
        str(p.relative_to(PKG)): sorted(m for m in _imports(p) if m.startswith("spikebridge.analysis"))
        for p in (PKG / "conversion").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_diagnose_does_not_import_compare():
    assert "spikebridge.analysis.diagnose" in _imports(PKG / "analysis" / "compare.py")
    assert not any(m.startswith("spikebridge.analysis.compare") for m in _imports(PKG / "analysis" / "diagnose.py"))


def test_population_latency_public_name_kept():
    from spikebridge.analysis.graph import population_latency as from_analysis
    from spikebridge.conversion.latency import population_latency

    assert from_analysis is population_latency
