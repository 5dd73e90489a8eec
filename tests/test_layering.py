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
