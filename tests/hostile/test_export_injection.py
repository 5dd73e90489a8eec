"""Issue 19, part 2: a network file cannot put code into the Brian2 script that ``export --brian2`` writes.

Every free-text field of a network (its name, a population's ``layer``, a projection's
``kind`` and ``layer``, scales and metadata) is filled with strings that tried to end a
comment, a docstring or a string literal of the generated script (line breaks of every kind,
quotes, backslashes, non-ASCII, NUL).  The script must compile, and each payload must stay
inside a comment or a string literal (checked with :mod:`tokenize`); one script is also run in
a clean interpreter in an empty working directory, which must end with no file of a payload.
Names that become Brian2 identifiers (populations, projections) are refused on load with one line.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tokenize
from pathlib import Path

import h5py
import numpy as np
import pytest

from spikebridge.export.brian2_script import export_brian2_script
from spikebridge.snn.kernels import SharedKernel
from spikebridge.snn.network import Population, Projection, SpikingNetwork, load_network
from spikebridge.errors import SpikebridgeError

ROOT = Path(__file__).resolve().parents[2]


def _payloads(tag: str) -> list[str]:
    """Strings each of which, pasted unescaped, would run ``open('PWNED_<tag>_<k>', 'w')`` or break the script."""
    call = f"open('PWNED_{tag}_@', 'w')"
    breaks = ["\n", "\r", "\r\n", "\f\n", "\x0b\n", "\x1c", "\x85", "\u2028", "\u2029"]
    out = [f"x{b}{call}" for b in breaks]
    out += [
        f'x"""\n{call}\n"""',  # close the docstring
        f"x'''\n{call}\n'''",
        f"x\"); {call}; (\"",  # close a double-quoted literal
        f"x'); {call}; ('",
        f"x\\\n{call}",  # a trailing backslash joining lines
        f"\u00e9t\u00e9 \u7f51\u7edc \U0001f600\n{call}",  # non-ASCII (the script must stay ASCII)
        "{pop_lines}\n" + call,  # the header's placeholder
        "x\x00" + call,
        "\\N{LATIN SMALL LETTER A}\\x" + call,  # escapes that are invalid in a plain literal
    ]
    return [p.replace("@", str(k)) for k, p in enumerate(out)]


N_PAYLOADS = len(_payloads("n"))


def _network(name: str, layer: str, kind: str, extra: str) -> SpikingNetwork:
    r = np.random.default_rng(1)
    pops = [
        Population(name="inp", n=16, model="input", shape=(1, 4, 4), role="input", layer=layer),
        Population(name="conv", n=8, model="if", shape=(2, 2, 2), layer=layer),
        Population(name="out", n=3, model="lif", tau_mem=0.02, role="output", layer=layer,
                   params={"poisson_n": 2, "poisson_rate": 5.0, "poisson_weight": 0.1, extra: extra}),
    ]
    projs = [
        Projection(name="p_conv", pre="inp", post="conv", operator=SharedKernel(r.normal(0, 0.5, (2, 1, 3, 3)), (1, 4, 4), 1, 0),
                   kind=kind, layer=layer),
        Projection.from_dense(r.normal(0, 0.5, (3, 8)), name="p_out", pre="conv", post="out", delay=2e-3, kind=kind, layer=layer),
    ]
    return SpikingNetwork(pops, projs, input="inp", output="out", dt=1e-3, readout={"mode": "count", "scale": 1.0},
                          encoding={"kind": "poisson", extra: extra}, scales={extra: 1.5}, name=name,
                          metadata={extra: [extra]})


def _code_outside_literals(text: str) -> str:
    """The script's source with every comment and string literal removed."""
    keep = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.STRING) and not tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            keep.append(tok.string)
    return " ".join(keep)


def _export(tmp_path: Path, snn: SpikingNetwork) -> Path:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "net.snn"
    snn.save(path)
    loaded = load_network(path)  # the attacker's route: a network file
    x = np.random.default_rng(0).uniform(0, 1, (2, 1, 4, 4))
    script, _ = export_brian2_script(loaded, tmp_path / "out", x, n_steps=20)
    return script


@pytest.mark.parametrize("field", ["name", "layer", "kind", "extra"])
def test_every_payload_stays_inside_a_comment_or_a_literal(tmp_path, field):
    for k, payload in enumerate(_payloads(field)):
        texts = {"name": "net", "layer": "fc", "kind": "dense", "extra": "note"} | {field: payload}
        script = _export(tmp_path / str(k), _network(**texts))
        text = script.read_text(encoding="ascii")  # ASCII only: no encoding for an attacker to play with
        compile(text, str(script), "exec")
        assert "PWNED" in text or field == "extra", (field, payload)  # the payload did reach the script, escaped
        code = _code_outside_literals(text)
        assert "PWNED" not in code and "open" not in code.split(), (field, payload)


def test_all_payloads_at_once_run_in_a_clean_interpreter_and_create_nothing(tmp_path):
    """The script runs (as its user would run it) and only writes its results file."""
    pytest.importorskip("brian2")
    load = _payloads("layer")
    snn = _network(name=_payloads("name")[0], layer="".join(load), kind="".join(_payloads("kind")), extra=_payloads("extra")[4])
    script = _export(tmp_path, snn)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    before = set((tmp_path / "out").iterdir())
    proc = subprocess.run([sys.executable, "-I", str(script), "--target", "numpy"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "output spike counts per sample" in proc.stdout
    assert list(cwd.iterdir()) == []
    created = set((tmp_path / "out").iterdir()) - before
    assert [p.name for p in created] == ["net_results.npz"] or [p.name for p in created] == ["network_results.npz"]
    assert not list(tmp_path.rglob("PWNED*")) and not list(ROOT.glob("PWNED*"))


def _rename(path: Path, group: str, old: str, new: str) -> None:
    """Rename a population or projection inside a saved file, as a forger would."""
    from spikebridge._h5 import json_attr, text_attr

    with h5py.File(path, "a") as f:
        g = f[group]
        g.move(old, new)
        order = [new if n == old else n for n in json.loads(g.attrs["order"].decode())]
        g.attrs["order"] = text_attr(json_attr(order))
        if group == "populations":
            for p in f["projections"].values():
                for end in ("pre", "post"):
                    if json.loads(p.attrs[end].decode()) == old:
                        p.attrs[end] = text_attr(json_attr(new))
            for key in ("input", "output"):
                if f.attrs[key].decode() == old:
                    f.attrs[key] = text_attr(new)


BAD_NAMES = ["caf\u00e9", "x\ny", "a b", "1x", "_x", "x;open('PWNED','w')", "\u0430bc", "x\u2028"]


@pytest.mark.parametrize("group,old", [("populations", "conv"), ("projections", "p_out")])
@pytest.mark.parametrize("bad", BAD_NAMES)
def test_names_that_become_identifiers_are_refused_on_load_in_one_line(tmp_path, group, old, bad):
    path = tmp_path / "net.snn"
    _network("net", "fc", "dense", "note").save(path)
    _rename(path, group, old, bad)
    with pytest.raises(SpikebridgeError) as info:
        load_network(path)
    text = str(info.value)
    assert "\n" not in text and "\r" not in text and "\u2028" not in text
    assert "name must be an ASCII identifier (letters, digits, '_') not starting with '_'" in text
    assert repr(bad) in text
