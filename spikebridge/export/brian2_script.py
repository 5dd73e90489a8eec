"""Write a spiking network as a standalone Brian2 script (brian2 + numpy only).

:func:`export_brian2_script` writes ``<out_dir>/<name>.py`` and
``<out_dir>/<name>.npz``: the script builds the same objects as
:mod:`.builder` (one ``NeuronGroup`` per population, one ``Synapses`` per
projection, ``B`` samples side by side), reads weights, delays, indices and
the inputs of ``B`` samples from the ``.npz`` (``allow_pickle=False``), runs
them, prints the output spike counts and saves every population's counts to
``<name>_results.npz``.  Equations, thresholds and resets come from
:mod:`.equations`, so the script and :func:`spikebridge.simulate` cannot
drift apart; the output counts are identical (tested).
"""

from __future__ import annotations

import builtins
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..snn.network import SpikingNetwork
from ..errors import BuildError, ValidationError
from ..engines.brian2.builder import SCHEDULE
from ..engines.brian2.equations import input_spec, neuron_spec
from ..engines.plan import compile, draw_poisson, prepare_inputs

__all__ = ["export_brian2_script"]

_UNITS = {"second": "b2.second", "1/second": "b2.Hz", "1": "1.0"}


def _ns(namespace: dict[str, Any]) -> str:
    items = [f"{k!r}: {float(v)!r} * {_UNITS[u]}" if u != "1" else f"{k!r}: {float(v)!r}" for k, (v, u) in namespace.items()]
    return "{" + ", ".join(items) + "}"


# names the script itself uses; a population or projection called so gets a suffixed variable
_RESERVED = {
    "b2", "np", "os", "argparse", "parser", "args", "HERE", "data", "B", "N_STEPS", "dt", "clock", "objects", "block",
    "raster", "values", "net", "results", "spike_monitors", "potential", "counts", "v", "s", "score", "name", "mon",
}


def _variables(names: list[str]) -> dict[str, str]:
    """A Python variable per Brian2 object name, avoiding keywords, builtins and the script's own names."""
    import builtins
    import keyword

    used: set[str] = set(_RESERVED)
    out: dict[str, str] = {}
    for n in names:
        var = n
        while var in used or keyword.iskeyword(var) or hasattr(builtins, var):
            var += "_"
        used.add(var)
        out[n] = var
    return out


def _quote(text: str) -> str:
    # equations come from .equations (our own text), but a triple-quoted literal must still not be closable from inside
    if "\n" not in text or '"""' in text or "\\" in text:
        return repr(text)
    return '"""\n' + text + '\n"""'


def _r(value: Any) -> str:
    """A string of the network file (name, layer, kind ...) as it may appear in a comment of the script.

    ``ascii`` (``repr`` with non-ASCII escaped too) escapes every line break (``\\n``, ``\\r``, ``\\f``, ``\\x85``, ``\\u2028`` ...) and every
    non-printable character, so the text cannot end the comment and become code, and the script stays ASCII.
    """
    return ascii(str(value)) if value is not None else "None"


def _n(name: str) -> str:
    """A population name in a comment: bare when an ASCII identifier (what loading enforces), else as :func:`_r`."""
    return name if name.isascii() and name.isidentifier() else _r(name)


def _doc(value: Any) -> str:
    """Like :func:`_r`, for the script's docstring: backslashes and double quotes escaped once more, so the
    docstring reads exactly as ``repr(value)`` and a ``\"\"\"`` in the value cannot close it."""
    return _r(value).replace("\\", "\\\\").replace('"', '\\"')


def export_brian2_script(
    snn: SpikingNetwork,
    out_dir: str | os.PathLike[str],
    inputs: ArrayLike | None = None,
    *,
    n_steps: int = 128,
    seed: int = 0,
    overwrite: bool = False,
    name: str | None = None,
) -> tuple[Path, Path]:
    """Write ``snn`` as a readable Brian2 script and its arrays.

    Parameters
    ----------
    snn : SpikingNetwork
    out_dir : str or path-like
        Directory (created if missing) that receives ``<name>.py`` and ``<name>.npz``.
    inputs : array_like, shape (n_samples, *input_shape), optional
        ANN-unit inputs of the samples the script simulates (required when the
        network has an input population).  Poisson inputs are drawn here, as
        :func:`spikebridge.simulate` draws them with ``seed``.
    n_steps : int
        Time steps the script runs.
    seed : int
        Seed of the Poisson draws and of ``brian2.seed`` in the script.
    overwrite : bool
        Replace existing files.
    name : str, optional
        File stem (default: the network's name).

    Returns
    -------
    (script, arrays) : tuple of Path

    Raises
    ------
    ValidationError
        Files exist without ``overwrite``, or bad inputs.
    BuildError
        A model the Brian2 builder cannot express.
    """
    stem = name or snn.name
    if not (stem.isascii() and stem.isidentifier()):
        stem = "network"
    out = Path(out_dir)
    script, arrays = out / f"{stem}.py", out / f"{stem}.npz"
    for path in (script, arrays, out / f"{stem}_results.npz"):
        if path.exists() and not overwrite:
            raise ValidationError(f"export: '{path}' exists; pass --overwrite to replace it", attr="output")
    dt = float(snn.dt)
    if snn.input is not None and inputs is None:
        raise ValidationError(f"export: network '{snn.name}' has an input population; give inputs (e.g. --data digits:test)", attr="inputs")
    plan = draw_poisson(prepare_inputs(snn, inputs, dt), n_steps, dt, seed, 0)
    b = plan.n_samples
    kind = "spikes" if plan.raster is not None else str(snn.encoding.get("kind", "current"))
    compiled = compile(snn, dt=dt, n_steps=n_steps)
    folded = compiled.folded
    has_current = {p.post for p in snn.projections.values() if p.name in folded}
    data: dict[str, np.ndarray] = {}
    lines: list[str] = []
    emit = lines.append
    names = list(compiled.active)
    same_step = compiled.same_step  # the builder's schedule for same-step delivery
    rank = {name: r for r, name in enumerate(compiled.order)}
    spiking: list[str] = []
    floors = compiled.floors
    var = _variables(names + [p.name for p in snn.projections.values() if p.name not in folded])
    for pname in names:
        pop = snn.populations[pname]
        g = var[pname]
        seq = bool(plan.window_steps) and pname in has_current
        try:
            spec = (input_spec(kind) if pname == snn.input
                    else neuron_spec(pop, has_current=pname in has_current, sequence=seq))
        except ValueError as err:
            raise BuildError(str(err)) from err
        ns = _ns(spec.namespace)
        if seq:
            data[f"{pname}__I_seq"] = np.asarray(plan.currents[pname], dtype=np.float64)
            emit("# sequence input: element t drives window t (a row per window, then a silent row; 1/second)")
            emit(f"values = np.zeros(({plan.currents[pname].shape[1]} + 1, B, {pop.n}))")
            emit(f"values[:-1] = np.transpose(data[{_r(pname + '__I_seq')}], (1, 0, 2))")
            emit(f"{g}_seq = b2.TimedArray(values.reshape(values.shape[0], -1) / b2.second, "
                 f"dt={int(plan.window_steps)} * dt, name={_r(pname + '_seq')})")
            ns = ns[:-1] + (", " if spec.namespace else "") + f"'I_seq': {g}_seq}}"
        what = f"{_r(kind)} input" if pname == snn.input else _r(pop.model)
        src = f"; ANN layer {_r(pop.layer)}" if pop.layer else ""
        emit(f"# --- population {_r(pname)}: {pop.n} {what} neurons per sample{src}; role {_r(pop.role)}, "
             f"outgoing sign {_r(pop.sign)} ---")
        if pname == snn.input and kind == "spikes":
            assert plan.raster is not None
            data[f"{pname}__raster"] = plan.raster
            emit("# input spikes per sample, step and neuron (drawn like spikebridge.simulate draws them)")
            emit(f"raster = data[{pname + '__raster'!r}]")
            emit("values = np.zeros((raster.shape[1] + 1, B, raster.shape[2]))  # one silent row after the end")
            emit("values[:-1] = np.transpose(raster, (1, 0, 2))")
            emit(f"{g}_raster = b2.TimedArray(values.reshape(values.shape[0], -1), dt=dt, name={pname + '_raster'!r})")
            ns = ns[:-1] + (", " if spec.namespace else "") + f"'spike_raster': {g}_raster}}"
        args = [f"B * {pop.n}", _quote(spec.equations) if spec.equations else "''"]
        if spec.threshold:
            args.append(f"threshold={spec.threshold!r}")
            args.append(f"reset={spec.reset or ''!r}")
        if spec.refractory > 0:
            args.append(f"refractory={spec.refractory!r} * b2.second")
        args += [f"method={spec.method!r}", "clock=clock", f"name={pname!r}", f"namespace={ns}"]
        emit(f"{g} = b2.NeuronGroup(" + ", ".join(args) + ")")
        for key, arr in spec.per_neuron.items():
            data[f"{pname}__{key}"] = np.asarray(arr, dtype=np.float64)
            unit = " / b2.second" if key == "bias" else ""
            emit(f"{g}.{key} = np.tile(data[{pname + '__' + key!r}], B){unit}")
        if pname in floors:
            w_steps, floor = floors[pname]
            emit(f"# window floor: a ReLU forgets a negative drive at the end of each element (before the state update)")
            emit(f"{g}.run_regularly('v = clip(v, {floor!r}, inf)', dt={w_steps} * dt, when='start', name={pname + '_floor'!r})")
        if pname in compiled.wraps:
            w_steps, theta = compiled.wraps[pname]
            emit(f"# window wrap: a negative membrane drops whole spikes of debt and keeps the fraction")
            emit(f"{g}.run_regularly('v = v - {theta!r} * floor(v / {theta!r}) * int(v < 0)', dt={w_steps} * dt, "
                 f"when='start', name={pname + '_wrap'!r})")
        if pname in plan.currents and not seq:
            data[f"{pname}__I_in"] = np.asarray(plan.currents[pname], dtype=np.float64)
            emit("# constant input current of every sample: the current-encoded input's projection folded in (1/second)")
            emit(f"{g}.I_in = data[{pname + '__I_in'!r}].ravel() / b2.second")
        if pname == snn.input and plan.rates is not None:
            data[f"{pname}__rate"] = plan.rates
            emit(f"{g}.rate = data[{pname + '__rate'!r}].ravel() * b2.Hz")
        if pname != snn.input:
            v0 = np.asarray(pop.v_init, dtype=np.float64)
            if v0.ndim:
                data[f"{pname}__v_init"] = v0
                emit(f"{g}.v = np.tile(data[{pname + '__v_init'!r}], B)")
            elif float(v0) != 0.0:
                emit(f"{g}.v = {float(v0)!r}  # initial membrane potential")
        p = pop.params
        if p.get("poisson_n"):
            gate = " * int(not_refractory)" if pop.refractory > 0 else ""
            emit(f"# external Poisson drive: {int(p['poisson_n'])} inputs per neuron at {float(p['poisson_rate'])!r} Hz")
            emit(f"{g}_drive = b2.PoissonInput({g}, 'v', N={int(p['poisson_n'])}, "
                 f"rate={float(p['poisson_rate'])!r} * b2.Hz, weight={repr(float(p['poisson_weight'])) + gate!r})")
            emit(f"objects.append({g}_drive)")
        emit(f"objects.append({g})")
        if spec.threshold:
            spiking.append(pname)
            if same_step:
                emit(f"{g}.thresholder['spike'].order = {4 * rank[pname] + 1}  # update order within the step")
        emit("")

    for proj in snn.projections.values():
        if proj.name in folded:
            continue
        pre_n, post_n = snn.populations[proj.pre].n, snn.populations[proj.post].n
        steps = np.broadcast_to(snn.projection_steps(proj, dt), proj.weight.shape)
        order = np.lexsort((proj.post_index, proj.pre_index))  # the builder's order: same summation order
        hetero = steps.size > 0 and bool(np.any(steps != steps.flat[0]))
        d = int(steps.flat[0]) if steps.size else 1
        key = proj.name
        sv = var[key]
        data[f"{key}__pre"] = proj.pre_index[order].astype(np.int32)
        data[f"{key}__post"] = proj.post_index[order].astype(np.int32)
        data[f"{key}__w"] = proj.weight[order]
        delay_txt = "per-synapse delays" if hetero else f"delay {d} step{'s' if d != 1 else ''}"
        emit(f"# --- projection {_r(proj.name)}: {_n(proj.pre)} -> {_n(proj.post)} ({_r(proj.kind)}, {proj.n_synapses} synapses "
             f"per sample, sign {_r(proj.sign)}, {delay_txt}, acts on {_r(proj.target)}) ---")
        gate = " * int(not_refractory_post)" if proj.target == "v" and snn.populations[proj.post].refractory > 0 else ""
        mult = " * n_burst_pre" if snn.populations[proj.pre].graded else ""  # a burst's multiplicity (-1: negative)
        kw = ["model='w : 1'", f"on_pre={proj.target + '_post += w' + mult + gate!r}", "clock=clock", f"name={proj.name!r}",
              "namespace={}", "method='exact'"]
        lag = 0 if proj.name in same_step else 1
        if not hetero:
            kw.append(f"delay={d - lag} * dt")
        emit(f"{sv} = b2.Synapses({var[proj.pre]}, {var[proj.post]}, " + ", ".join(kw) + ")")
        emit(f"{sv}.connect(i=block(data[{key + '__pre'!r}], {pre_n}), j=block(data[{key + '__post'!r}], {post_n}))")
        emit(f"{sv}.w = np.tile(data[{key + '__w'!r}], B)")
        if hetero:
            data[f"{key}__delay_steps"] = steps[order].astype(np.int32)
            emit(f"{sv}.delay = np.tile(data[{key + '__delay_steps'!r}] - {lag}, B) * dt")
        if lag == 0:
            emit(f"{sv}.pre.when = 'thresholds'  # same-step delivery: after {_n(proj.pre)}'s threshold, before {_n(proj.post)}'s")
            emit(f"{sv}.pre.order = {4 * rank[proj.post]}")
        emit(f"objects.append({sv})")
        emit("")

    emit("# --- monitors: spike counts of every spiking population, the output's potential ---")
    emit("spike_monitors = {}")
    for pname in spiking:
        emit(f"spike_monitors[{pname!r}] = b2.SpikeMonitor({var[pname]}, record=False, name={pname + '_spikes'!r})")
    emit("objects.extend(spike_monitors.values())")
    out_name = snn.output if snn.output in names else None
    if out_name:
        emit(f"potential = b2.StateMonitor({var[out_name]}, 'v', record=True, when='end', name={out_name + '_potential'!r})")
        emit("objects.append(potential)")
    body = "\n".join(lines)

    readout = dict(snn.readout)
    pop_lines = "\n".join(
        f"#   {p.name:<16} {p.model:<10} {p.n:>7} neurons per sample  role {p.role}" + (f", layer {_r(p.layer)}" if p.layer else "")
        for p in snn.populations.values()
    )
    header = f'''\
        #!/usr/bin/env python3
        """Spiking network {_doc(snn.name)} as a plain Brian2 script (exported by spikebridge).

        Needs only brian2 and numpy.  Weights, delays, indices and inputs are in
        {arrays.name!r} beside this file.  {b} sample(s) run side by side in one network:
        sample s owns neurons s*n ... s*n + n - 1 of every group.

        Run:   python {script.name} [--target numpy|cython|auto]
        Prints the output population's spike counts per sample and writes
        {stem + "_results.npz"!r} (counts of every spiking population, output potential).

        Timing: the schedule below delivers synaptic events before the threshold
        test, and a delay of d steps is a Brian2 delay of (d - 1) dt, so a spike of
        step j arrives in step j + d after the state update -- the discrete-time
        semantics of spikebridge.simulate, whose spikes this script reproduces.
        Projections set to the 'thresholds' slot deliver in the step itself: they
        run between their source's and their target's threshold test, with a
        Brian2 delay of d dt (same-step delivery, min_delay_steps=0).
        """
        # Populations (neurons per sample):
        \x00pop_lines\x00

        import argparse
        import os

        import brian2 as b2
        import numpy as np

        parser = argparse.ArgumentParser(description={"Run the exported spiking network " + _r(snn.name) + "."!r})
        parser.add_argument("--target", default="auto", help="Brian2 code generation target (numpy needs no compiler)")
        args = parser.parse_args()
        b2.prefs.codegen.target = args.target

        HERE = os.path.dirname(os.path.abspath(__file__))
        data = np.load(os.path.join(HERE, {arrays.name!r}), allow_pickle=False)
        B = {b}  # samples simulated side by side
        N_STEPS = {int(n_steps)}  # time steps per sample
        dt = {dt!r} * b2.second  # the network's time step
        b2.seed({int(seed)})  # Brian2's own random numbers (external Poisson drive only)
        clock = b2.Clock(dt=dt, name="clock")
        objects = []


        def block(index, n):
            """Per-sample neuron indices -> indices in all B copies (sample-major)."""
            return (np.arange(B)[:, None] * n + index[None, :]).ravel()


        '''
    # a NUL cannot come from the network's text (ascii() escapes it), so only this placeholder is replaced
    header = textwrap.dedent(header).replace("\x00pop_lines\x00", pop_lines)
    footer = textwrap.dedent(f'''

        net = b2.Network(*objects, name="network")
        # synaptic delivery before the threshold test (see the docstring)
        net.schedule = {list(SCHEDULE)!r}
        net.run(N_STEPS * dt, namespace={{}})

        results = {{name + "__counts": np.asarray(mon.count[:]).reshape(B, -1) for name, mon in spike_monitors.items()}}
        ''')
    bursts = [p for p in spiking if p != snn.input and snn.populations[p].graded]
    if bursts:
        footer += "# burst and signed populations: every spike of a burst, net of negative spikes (the monitors count events)\n"
        for pname in bursts:
            footer += f"results[{pname + '__counts'!r}] = np.rint(np.asarray({var[pname]}.n_emitted_[:])).astype(int).reshape(B, -1)\n"

    if out_name:
        theta = readout.get("threshold", 1.0)
        footer += textwrap.dedent(f'''\
            v = np.asarray(potential.v_[:]).reshape(B, {snn.populations[out_name].n}, -1)[:, :, -1]
            results["output__potential"] = v
            counts = results.get({out_name + "__counts"!r}, np.zeros(v.shape, dtype=int))
            print({"output spike counts per sample (" + out_name + "):"!r})
            for s in range(B):
                # class = most spikes, ties broken by the remaining membrane potential
                score = counts[s] + np.clip(v[s] / {float(theta)!r}, 0.0, 1.0)
                print(f"sample {{s}}: {{counts[s].tolist()}} -> class {{int(np.argmax(score))}}")
            ''')
    footer += textwrap.dedent(f'''\
        np.savez(os.path.join(HERE, {stem + "_results.npz"!r}), **results)
        ''')
    out.mkdir(parents=True, exist_ok=True)
    np.savez(arrays, **data)  # type: ignore[arg-type]
    text = header + body + "\n" + footer
    builtins.compile(text, str(script), "exec")  # a script that does not compile is a bug here, never a file for the user
    script.write_text(text, encoding="ascii")
    return script, arrays
