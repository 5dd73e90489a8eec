"""Exporters to community formats and to code: NWB spike files, NIR graphs, runnable Brian2 scripts."""
