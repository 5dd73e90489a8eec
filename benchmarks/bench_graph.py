"""Time spikebridge.analysis.graph.analyse on a 1e5-neuron, 1e7-synapse network, and networkx on a smaller one.

The large network is built directly as a SpikingNetwork (COO arrays, int32
indices) with Brunel-like structure: a spike-encoded input population, a
recurrent excitatory/inhibitory core with fixed in-degree and an output
population, so every scaling measure (components, degrees, strengths,
balance, reciprocity, latency) has work to do.  The same measures are then
timed with networkx on a network 100x smaller
(clustering and the triad census only on a sampled subgraph: they do not scale) (networkx needs ~1 KB per edge,
so the large one does not fit comfortably), next to analyse() on that one.

Usage::

    python benchmarks/bench_graph.py [--neurons 100000] [--synapses 10000000] [--small-factor 100]

Prints a table and writes benchmarks/results/graph.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np

from spikebridge.analysis.graph import analyse, to_networkx
from spikebridge.snn.network import Population, Projection, SpikingNetwork

RESULTS = Path(__file__).resolve().parent / "results" / "graph.json"


def build(n_neurons: int, n_synapses: int, seed: int = 0) -> SpikingNetwork:
    """A 4-population E/I network with about ``n_synapses`` random synapses (fixed in-degree)."""
    rng = np.random.default_rng(seed)
    n_in = max(n_neurons // 100, 2)
    n_out = max(n_neurons // 100, 2)
    n_core = n_neurons - n_in - n_out
    n_e = int(0.8 * n_core)
    n_i = n_core - n_e
    k = max(n_synapses // n_core, 4)  # in-degree of every core neuron
    k_in, k_e, k_i = max(k // 10, 1), int(0.7 * k), k - max(k // 10, 1) - int(0.7 * k)
    pops = [
        Population(name="input", n=n_in, model="input", role="input"),
        Population(name="E", n=n_e, model="lif", tau_mem=0.02, sign="excitatory"),
        Population(name="I", n=n_i, model="lif", tau_mem=0.02, sign="inhibitory"),
        Population(name="out", n=n_out, model="if", role="output"),
    ]

    def fixed_indegree(name, pre, n_pre, post, n_post, indeg, w, delay):
        post_i = np.repeat(np.arange(n_post, dtype=np.int32), indeg)
        pre_i = rng.integers(0, n_pre, size=post_i.size, dtype=np.int32)
        return Projection(name=name, pre=pre, post=post, pre_index=pre_i, post_index=post_i,
                          weight=np.full(post_i.size, w, dtype=np.float32), delay=delay)

    e_share = n_e / n_core
    projs = [
        fixed_indegree("in_E", "input", n_in, "E", n_e, k_in, 0.2, 1e-3),
        fixed_indegree("in_I", "input", n_in, "I", n_i, k_in, 0.2, 1e-3),
        fixed_indegree("EE", "E", n_e, "E", n_e, int(k_e * e_share) + 1, 0.1, 1.5e-3),
        fixed_indegree("EI", "E", n_e, "I", n_i, int(k_e * e_share) + 1, 0.1, 1.5e-3),
        fixed_indegree("IE", "I", n_i, "E", n_e, k_i + int(k_e * (1 - e_share)), -0.5, 1.5e-3),
        fixed_indegree("II", "I", n_i, "I", n_i, k_i + int(k_e * (1 - e_share)), -0.5, 1.5e-3),
        fixed_indegree("E_out", "E", n_e, "out", n_out, k, 0.05, 2e-3),
    ]
    return SpikingNetwork(pops, projs, input="input", output="out", dt=1e-4, encoding={"kind": "poisson"},
                          name=f"bench_{n_neurons}")


def time_networkx(snn: SpikingNetwork) -> dict[str, float]:
    import networkx as nx

    out = {}
    t = time.perf_counter()
    g = to_networkx(snn, level="neuron")
    out["build_graph"] = time.perf_counter() - t
    t = time.perf_counter()
    nx.number_strongly_connected_components(g)
    out["components"] = time.perf_counter() - t
    t = time.perf_counter()
    nx.reciprocity(g)
    out["reciprocity"] = time.perf_counter() - t
    t = time.perf_counter()
    dict(g.in_degree())
    dict(g.out_degree())
    dict(g.in_degree(weight="weight"))
    out["degrees_balance"] = time.perf_counter() - t
    t = time.perf_counter()
    sources = [n for n, d in g.nodes(data=True) if d["population"] == "input"]
    nx.multi_source_dijkstra_path_length(g, sources, weight="delay")
    out["latency"] = time.perf_counter() - t
    out["total"] = sum(out.values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=int, default=100_000)
    ap.add_argument("--synapses", type=int, default=10_000_000)
    ap.add_argument("--small-factor", type=int, default=100)
    ap.add_argument("--sample", type=int, default=1000, help="neurons sampled for clustering and motifs")
    args = ap.parse_args()

    t = time.perf_counter()
    big = build(args.neurons, args.synapses)
    t_build = time.perf_counter() - t
    rep_big = analyse(big)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    small = build(args.neurons // args.small_factor, args.synapses // args.small_factor, seed=1)
    rep_small = analyse(small, exact_limit=(0, 0))  # the non-scaling measures are timed on a sample below
    nx_small = time_networkx(small)
    rep_sample = analyse(big, sample_size=args.sample)

    keys = ["adjacency", "degrees_balance", "components", "reciprocity", "loops", "latency", "total"]
    print(f"network build: {t_build:.2f} s; peak RSS {peak_mb:.0f} MB")
    print(f"{'measure':<18} {'analyse ' + f'{big.n_neurons:.0e}/{big.n_synapses:.0e}':>22} "
          f"{'analyse ' + f'{small.n_neurons:.0e}/{small.n_synapses:.0e}':>22} {'networkx (same small)':>22}")
    for key in keys:
        nxv = nx_small.get(key)
        print(f"{key:<18} {rep_big.timings.get(key, 0.0):>20.3f} s {rep_small.timings.get(key, 0.0):>20.3f} s "
              f"{(f'{nxv:.3f} s' if nxv is not None else '-'):>22}")
    print(f"{'nx graph build':<18} {'-':>22} {'-':>22} {nx_small['build_graph']:>20.3f} s")
    print(f"clustering + triad census on a {args.sample}-neuron sample of the big network: "
          f"{rep_sample.timings['clustering_motifs']:.3f} s (clustering {rep_sample.clustering:.3g})")
    print(f"big: {rep_big.components['n_components']} SCCs, largest {rep_big.components['largest']}, "
          f"reciprocity {rep_big.reciprocity:.2e}, latency {rep_big.latency['shortest_steps']}-"
          f"{rep_big.latency['longest_steps']} steps")
    for note in rep_big.notes:
        print("note:", note)
    result = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "big": {"neurons": big.n_neurons, "synapses": big.n_synapses, "build_s": t_build, "peak_rss_mb": peak_mb,
                "timings_s": rep_big.timings, "components": rep_big.components, "reciprocity": rep_big.reciprocity,
                "latency": rep_big.latency, "notes": rep_big.notes},
        "sample": {"neurons": args.sample, "clustering_motifs_s": rep_sample.timings["clustering_motifs"],
                   "clustering": rep_sample.clustering, "motifs": rep_sample.motifs},
        "small": {"neurons": small.n_neurons, "synapses": small.n_synapses, "analyse_timings_s": rep_small.timings,
                  "networkx_timings_s": nx_small},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
