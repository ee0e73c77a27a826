"""Scoring speed: complexes scored per second in-process and with 1 and 2 Dask workers.

Builds complex graphs on the 1iep fixture without docking: the first ``--ligands``
compounds of the demo library get an RDKit conformer placed at the crystal
ligand's centroid (drug-sized graphs; the pose does not matter for speed), plus
the crystal imatinib pose. The graphs are cached under ``benchmarks/.cache/``
(git-ignored), replicated under different ids up to ``--complexes`` and written as
``--files`` graph files. The model is an untrained ensemble of ``--models`` members
with the default architecture (inference cost does not depend on the weights).

For each setting the first call (workers import the package and load the model)
and the best of the following warm calls are timed; the cluster start-up is
reported separately. Prints a table and writes ``benchmarks/results/score_speed.json``.

Run: ``python benchmarks/score_speed.py [--complexes 512] [--device cpu|cuda|auto]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FIXTURE = REPO / "resources" / "fixtures" / "1iep"
CACHE = HERE / ".cache" / "score_speed"


def base_graphs(n_ligands: int) -> list[dict]:
    """Graphs of the crystal pose and of ``n_ligands`` demo compounds placed in the pocket (cached)."""
    import torch

    cache = CACHE / f"graphs_{n_ligands}.pt"
    if cache.exists():
        from pipeline.graphs import load_graphs

        _, graphs = load_graphs(cache)
        return [{k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in g.items()} for g in graphs]
    from rdkit import Chem
    from rdkit.Chem import AllChem
    from rdkit.Geometry import Point3D

    from pipeline.graphs import complex_graph, save_graphs
    from pipeline.interactions import load_receptor

    receptor = load_receptor(FIXTURE / "1iep_receptorH.pdb")
    crystal = Chem.MolFromMolFile(str(FIXTURE / "1iep_ligand.sdf"), removeHs=False)
    center = crystal.GetConformer().GetPositions().mean(0)
    graphs = [
        dict(complex_graph(crystal, receptor, None, {"docking_score": -12.0}), id="imatinib", pose=1, source="docked")
    ]
    library = pd.read_csv(REPO / "resources" / "demo" / "library.csv").head(n_ligands)
    for cid, smi in zip(library["id"], library["smiles"]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        if AllChem.EmbedMolecule(mol, randomSeed=7) != 0:
            continue
        conf = mol.GetConformer()
        xyz = conf.GetPositions()
        for i, p in enumerate(xyz - xyz.mean(0) + center):
            conf.SetAtomPosition(i, Point3D(*p))
        graphs.append(
            dict(complex_graph(mol, receptor, None, {"docking_score": -8.0}), id=cid, pose=1, source="docked")
        )
    save_graphs(cache, graphs)
    return graphs


def write_inputs(
    graphs: list[dict], n_complexes: int, n_files: int, n_models: int, out: Path
) -> tuple[list[Path], Path]:
    """Graph files of ``n_complexes`` complexes (copies under new ids) and an untrained model folder."""
    from pipeline.graphs import save_graphs
    from pipeline.scoring.ensemble import new_ensemble, save_ensemble

    copies = [dict(graphs[k % len(graphs)], id=f"{graphs[k % len(graphs)]['id']}~{k}") for k in range(n_complexes)]
    files = []
    for j in range(n_files):
        files.append(out / f"batch_{j}.pt")
        save_graphs(files[-1], copies[j::n_files])
    model = save_ensemble(new_ensemble(n_models=n_models, seed=0), out / "models" / "bench")
    return files, model


def score_rate(
    files: list[Path],
    model: Path,
    n_workers: int | None,
    repeats: int,
    batch_size: int,
    device: str,
    threads: int | None = None,
) -> tuple[dict, pd.DataFrame]:
    """Time :func:`score_graph_files`; ``n_workers=None`` runs in-process (no Dask)."""
    from pipeline.dask_cluster import DaskSettings, close_client, make_client
    from pipeline.scoring.score import score_graph_files

    start = time.perf_counter()
    client = make_client(DaskSettings(n_workers=n_workers)) if n_workers else None
    startup = time.perf_counter() - start
    runs = []
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            table = score_graph_files(
                files, model, client=client, batch_size=batch_size, device=device, threads=threads
            )
            runs.append(time.perf_counter() - t0)
    finally:
        if client is not None:
            close_client(client)
    n, warm = len(table), min(runs[1:] or runs)
    return dict(
        workers=n_workers or 0,
        complexes=n,
        cluster_startup_s=round(startup, 2),
        first_call_s=round(runs[0], 2),
        warm_call_s=round(warm, 3),
        first_call_rate=round(n / runs[0], 1),
        warm_rate=round(n / warm, 1),
    ), table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ligands", type=int, default=15, help="demo compounds turned into distinct complex graphs")
    parser.add_argument("--complexes", type=int, default=512, help="complexes scored per call (copies of the graphs)")
    parser.add_argument("--files", type=int, default=8, help="graph files (one Dask task each)")
    parser.add_argument("--models", type=int, default=5, help="ensemble members")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="calls per setting (the first one cold)")
    parser.add_argument("--workers", default="1,2", help="Dask worker counts to time, besides in-process")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="PyTorch threads for the in-process run (default: PyTorch's own choice)",
    )
    parser.add_argument("--out", default=str(HERE / "results" / "score_speed.json"))
    args = parser.parse_args()

    import logging

    import distributed  # noqa: F401  (creates its loggers, at INFO level, so they can be quietened)
    import torch

    from pipeline.scoring.model import ComplexScorer, count_parameters

    logging.basicConfig(level=logging.WARNING)
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("distributed")]:
        logging.getLogger(name).setLevel(logging.WARNING)
    graphs = base_graphs(args.ligands)
    rows, tables = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        files, model = write_inputs(graphs, args.complexes, args.files, args.models, Path(tmp))
        from pipeline.graphs import DEFAULT_SCHEMA

        for workers in [None] + [int(w) for w in args.workers.split(",") if w]:
            row, tables[workers or 0] = score_rate(
                files,
                model,
                workers,
                args.repeats,
                args.batch_size,
                args.device,
                args.threads if workers is None else None,
            )
            rows.append(row)
    by_workers = {r["workers"]: r for r in rows}
    reference = tables[0]
    agreement = {
        w: float(
            np.abs(t[["gnn_score", "gnn_spread"]].to_numpy() - reference[["gnn_score", "gnn_spread"]].to_numpy()).max()
        )
        for w, t in tables.items()
        if w
    }
    nodes = [len(g["x"]) for g in graphs]
    edges = [g["edge_index"].shape[1] for g in graphs]
    result = dict(
        benchmark="score_speed",
        machine=dict(
            platform=platform.platform(),
            cpus=os.cpu_count(),
            python=platform.python_version(),
            torch=torch.__version__,
            torch_threads_in_process=args.threads or torch.get_num_threads(),
            load_average_1min=round(os.getloadavg()[0], 2),
            gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        ),
        device=args.device,
        complexes=args.complexes,
        files=args.files,
        distinct_graphs=len(graphs),
        graph_nodes_mean=round(float(np.mean(nodes)), 1),
        graph_edges_mean=round(float(np.mean(edges)), 1),
        ensemble_members=args.models,
        parameters_per_member=count_parameters(ComplexScorer(DEFAULT_SCHEMA)),
        batch_size=args.batch_size,
        runs=rows,
        scaling_2_vs_1_workers=(
            round(by_workers[2]["warm_rate"] / by_workers[1]["warm_rate"], 2)
            if 1 in by_workers and 2 in by_workers
            else None
        ),
        max_abs_difference_vs_in_process=agreement,
        note="rate = complexes scored per second by the whole ensemble; warm = model already loaded by every "
        "worker; first call = workers import the package and load the model; workers 0 = in-process "
        "(torch_threads_in_process threads), Dask workers run 1 thread each",
    )
    print(
        f"{args.complexes} complexes ({len(graphs)} distinct graphs, mean {result['graph_nodes_mean']} nodes / "
        f"{result['graph_edges_mean']} edges), {args.models} members x {result['parameters_per_member']} parameters, "
        f"device {args.device}, load average {result['machine']['load_average_1min']}"
    )
    print(f"{'workers':>8} {'startup s':>10} {'first s':>8} {'warm s':>7} {'first /s':>9} {'warm /s':>8}")
    for r in rows:
        print(
            f"{r['workers'] or 'in-proc':>8} {r['cluster_startup_s']:>10} {r['first_call_s']:>8} {r['warm_call_s']:>7} "
            f"{r['first_call_rate']:>9} {r['warm_rate']:>8}"
        )
    if result["scaling_2_vs_1_workers"] is not None:
        print(f"scaling 2 vs 1 workers (warm): {result['scaling_2_vs_1_workers']}x")
    print(f"max |score difference| vs in-process: {agreement}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
