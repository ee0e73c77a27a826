"""Every speed figure of the pipeline, each against a baseline measured in the same run.

One command, one table, one JSON (``benchmarks/results/<machine>-<date>.json``):

* **docking**: ligands/hour of the pipeline's docking stage vs. the ``vina`` 1.2 command-line
  program (Debian ``autodock-vina``, batch mode) and the Vina 1.1.2 binary of ``dockstring``,
  on the same prepared ligands, receptor, box, exhaustiveness, seed and CPU count
  (``docking_speed.py``);
* **MD**: ns/day and poses/hour of the default refinement protocol, with the simulated
  system size, vs. the same protocol with the whole receptor simulated (``md_speed.py``);
  on the CPU, and on CUDA when a GPU is present;
* **featurization** and **GNN scoring**: complexes/second with 1 and 2 Dask workers, and
  in-process (``featurize_speed.py``, ``score_speed.py``);
* **end to end**: compounds/hour of the demo configuration (docking, MD of the top poses,
  featurization, GNN scoring, ranking, report) on a slice of the demo library, split by
  stage from Snakemake's per-job benchmark files, vs. the ``vina`` CLI docking the same
  prepared ligands alone with the same settings and cores.

``--quick`` (under 15 minutes on 2 cores) uses fewer ligands, poses and repeats; the full run
takes about an hour. The machine's load average is recorded before and after: on a shared
machine every absolute number moves, the ratios much less.

    python benchmarks/run.py --quick
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from pipeline.config import schema_default  # noqa: E402


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run."""

    dock_ligands: int
    dock_exhaustiveness: int
    dock_rounds: int
    md_poses: int
    md_baseline_poses: int
    md_baseline_length_ps: float | None  # None: the protocol's own length
    featurize_compounds: int
    featurize_copies: int
    score_complexes: int
    repeats: int
    e2e_compounds: int
    e2e_refine: int


QUICK = Plan(
    dock_ligands=3,
    dock_exhaustiveness=schema_default("docking", "exhaustiveness"),  # the speed users get
    dock_rounds=2,
    md_poses=2,
    md_baseline_poses=1,
    md_baseline_length_ps=0.25,
    featurize_compounds=8,
    featurize_copies=2,
    score_complexes=256,
    repeats=2,
    e2e_compounds=6,
    e2e_refine=2,
)
FULL = Plan(
    dock_ligands=8,
    dock_exhaustiveness=schema_default("docking", "exhaustiveness"),
    dock_rounds=3,
    md_poses=5,
    md_baseline_poses=2,
    md_baseline_length_ps=None,
    featurize_compounds=16,
    featurize_copies=3,
    score_complexes=512,
    repeats=3,
    e2e_compounds=50,
    e2e_refine=5,
)


def machine_name() -> str:
    """``<cpus>cpu-<cpu model>`` (lower case, dashes), e.g. ``2cpu-amd-epyc-9b14``."""
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1]
                break
    except OSError:
        pass
    model = re.sub(r"\(r\)|\(tm\)|cpu|processor|\d+-core|@.*", " ", model.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", model).strip("-")
    gpu = gpu_name()
    if gpu:
        slug += "-" + re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    return f"{os.cpu_count()}cpu-{slug}"


def gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - no torch CUDA runtime means no GPU to report
        return None


# ----------------------------------------------------------------------------- stages


def bench_docking(plan: Plan, cpu: int) -> dict:
    from docking_speed import docking_benchmark, print_docking

    result = docking_benchmark(plan.dock_ligands, plan.dock_exhaustiveness, cpu, plan.dock_rounds)
    print_docking(result)
    return result


def bench_md(plan: Plan, platform_name: str) -> dict:
    """Default protocol (pocket-trimmed) vs. the whole receptor simulated, on docked demo poses."""
    from md_speed import demo_poses, ns_per_day, run
    from md_stability import protocol_before
    from rdkit import Chem

    from pipeline.refine import RefineSettings, select_platform

    receptor, sdf = demo_poses(max(plan.md_poses, plan.md_baseline_poses))
    poses = [m for m in Chem.SDMolSupplier(str(sdf), removeHs=False) if m is not None]
    settings = RefineSettings(platform=platform_name)
    name = select_platform(settings.platform, settings.precision).name
    trimmed = run(receptor, poses[: plan.md_poses], settings, "trimmed")
    # the protocol as it was before the warm-up and the blow-up retry (the MD issue's "today's 153
    # poses/h"), on the same poses in the same run: what the stable protocol costs in throughput
    earlier = run(receptor, poses[: plan.md_poses], protocol_before(settings), "before warm-up and retry")
    full = replace(settings, pocket_cutoff=None)
    if plan.md_baseline_length_ps:
        full = replace(full, length_ps=plan.md_baseline_length_ps)
    baseline = run(receptor, poses[: plan.md_baseline_poses], full, "full receptor")
    trimmed_nsday, full_nsday = ns_per_day(trimmed, settings.length_ps), ns_per_day(baseline, full.length_ps)
    result = dict(
        platform=name,
        protocol=dict(
            length_ps=settings.length_ps,
            hmr=settings.hmr,
            solvent=settings.solvent,
            pocket_cutoff=settings.pocket_cutoff,
        ),
        poses=len(trimmed),
        atoms_simulated=int(trimmed["n_atoms_simulated"].median()),
        seconds_per_pose=round(float(trimmed["wall_seconds"].median()), 1),
        poses_per_hour=round(3600 / float(trimmed["wall_seconds"].median()), 1),
        ns_per_day=round(trimmed_nsday, 2),
        baseline=dict(
            setting="whole receptor simulated",
            poses=len(baseline),
            length_ps=full.length_ps,
            atoms_simulated=int(baseline["n_atoms_simulated"].median()),
            ns_per_day=round(full_nsday, 2),
        ),
        ratio_ns_per_day_vs_whole_receptor=round(trimmed_nsday / full_nsday, 2),
        protocol_before=dict(
            setting="no warm-up, no retry, no energy-rise check (the protocol before the MD issue)",
            poses=len(earlier),
            seconds_per_pose=round(float(earlier["wall_seconds"].median()), 1),
            poses_per_hour=round(3600 / float(earlier["wall_seconds"].median()), 1),
        ),
    )
    result["ratio_poses_per_hour_vs_protocol_before"] = round(
        result["poses_per_hour"] / result["protocol_before"]["poses_per_hour"], 3
    )
    print(
        f"MD ({name}): {result['poses']} poses, {result['atoms_simulated']} atoms simulated, "
        f"{result['seconds_per_pose']} s/pose = {result['poses_per_hour']} poses/h, {result['ns_per_day']} ns/day; "
        f"whole receptor ({result['baseline']['atoms_simulated']} atoms): {result['baseline']['ns_per_day']} ns/day; "
        f"ratio {result['ratio_ns_per_day_vs_whole_receptor']}x"
    )
    return result


def bench_featurize(plan: Plan) -> dict:
    from featurize_speed import docked_chunk, featurize_rate

    from pipeline.featurize import read_docked_poses

    receptor, sdf, table = docked_chunk(plan.featurize_compounds)
    docked, _ = read_docked_poses(sdf, table, poses_per_compound=0)
    poses = [replace(p, id=f"{p.id}~{k}") for k in range(plan.featurize_copies) for p in docked]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [featurize_rate(poses, receptor, workers, plan.repeats, Path(tmp)) for workers in (None, 1, 2)]
    by = {r["workers"]: r for r in rows}
    result = dict(
        complexes=len(poses),
        runs=rows,
        complexes_per_second_1_worker=by[1]["warm_rate"],
        complexes_per_second_2_workers=by[2]["warm_rate"],
        ratio_2_vs_1_workers=round(by[2]["warm_rate"] / by[1]["warm_rate"], 2),
    )
    print(
        f"featurize: {len(poses)} complexes; in-process {by[0]['warm_rate']}/s, 1 worker {by[1]['warm_rate']}/s, "
        f"2 workers {by[2]['warm_rate']}/s; ratio {result['ratio_2_vs_1_workers']}x"
    )
    return result


def bench_score(plan: Plan, device: str) -> dict:
    from score_speed import base_graphs, score_rate, write_inputs

    graphs = base_graphs(15)
    with tempfile.TemporaryDirectory() as tmp:
        files, model = write_inputs(graphs, plan.score_complexes, 8, 5, Path(tmp))
        rows = [score_rate(files, model, workers, plan.repeats, 256, device)[0] for workers in (None, 1, 2)]
    by = {r["workers"]: r for r in rows}
    result = dict(
        device=device,
        complexes=plan.score_complexes,
        ensemble_members=5,
        runs=rows,
        complexes_per_second_1_worker=by[1]["warm_rate"],
        complexes_per_second_2_workers=by[2]["warm_rate"],
        ratio_2_vs_1_workers=round(by[2]["warm_rate"] / by[1]["warm_rate"], 2),
    )
    print(
        f"GNN scoring ({device}): {plan.score_complexes} complexes x 5 members; in-process {by[0]['warm_rate']}/s, "
        f"1 worker {by[1]['warm_rate']}/s, 2 workers {by[2]['warm_rate']}/s; ratio {result['ratio_2_vs_1_workers']}x"
    )
    return result


def stage_times(run_dir: Path) -> pd.DataFrame:
    """Per rule: jobs, summed wall seconds and CPU seconds, indexed by stage in workflow order.

    The report's own table (:func:`pipeline.report.timing.stage_times`, from Snakemake's
    ``benchmarks/<rule>/*.tsv``), with its job seconds named ``seconds``.
    """
    from pipeline.report.timing import stage_times as report_stage_times

    table = report_stage_times(run_dir).rename(columns={"job_seconds": "seconds"})
    return table.set_index("stage")[["jobs", "seconds", "cpu_seconds"]]


def _vina_alone(run_dir: Path, box, exhaustiveness: int, cores: int, seed: int) -> float:
    """Seconds for the ``vina`` CLI to dock the run's prepared ligands: ``cores`` batch processes, 1 CPU each."""
    from docking_speed import cli_batch_command, vina_cli, write_ligand_files

    receptor = next((run_dir / "receptor").glob("*.pdbqt"))
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for table in sorted((run_dir / "ligands").glob("chunk_*.parquet")):
            files += write_ligand_files(table, Path(tmp) / "ligands")
        procs, start = [], time.perf_counter()
        for k in range(cores):
            out = Path(tmp) / f"out{k}"
            out.mkdir()
            procs.append(
                subprocess.Popen(
                    cli_batch_command(vina_cli(), receptor, box, files[k::cores], exhaustiveness, 1, out, seed=seed),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for proc in procs:
            if proc.wait() != 0:
                raise RuntimeError("vina CLI failed on the end-to-end run's ligands")
        return time.perf_counter() - start


def bench_end_to_end(plan: Plan, cores: int) -> dict:
    """The demo configuration on the first compounds of the demo library (actives and decoys alternating)."""
    from pipeline.box import read_vina_config

    with open(REPO / "config" / "config.yaml") as handle:
        config = yaml.safe_load(handle)
    library = pd.read_csv(REPO / config["library"]["path"])
    actives, decoys = library[library.active == 1], library[library.active == 0]
    mixed = pd.concat([actives.head((plan.e2e_compounds + 1) // 2), decoys]).head(plan.e2e_compounds)
    name = "bench-end-to-end"
    run_dir = REPO / "results" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    work = Path(tempfile.mkdtemp())
    mixed.to_csv(work / "library.csv", index=False)
    config.update(run=name)
    config["library"] = dict(
        config["library"], path=str(work / "library.csv"), chunk_size=max(1, -(-len(mixed) // cores))
    )
    config["refine"] = dict(config["refine"], top_n=plan.e2e_refine, batch_size=plan.e2e_refine)
    config["report"] = dict(config.get("report", {}), top_n=min(25, len(mixed)))
    configfile = work / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    proc = subprocess.run(
        ["snakemake", "--cores", str(cores), "--configfile", str(configfile), "--quiet", "all"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the end-to-end demo run failed:\n{proc.stderr[-3000:]}")
    ranked = len(pd.read_csv(run_dir / "ranking.csv"))
    failed = len(pd.read_csv(run_dir / "failures.csv"))
    stages = stage_times(run_dir)
    box = read_vina_config(REPO / config["box"]["vina_config"])
    vina_s = _vina_alone(run_dir, box, config["docking"]["exhaustiveness"], cores, config["seed"])
    shutil.rmtree(work, ignore_errors=True)
    rate = 3600 * len(mixed) / wall
    vina_rate = 3600 * len(mixed) / vina_s
    total = float(stages["seconds"].sum())
    result = dict(
        config="config/config.yaml (demo) on the first compounds of its library",
        compounds=len(mixed),
        ranked=ranked,
        failed=failed,
        cores=cores,
        exhaustiveness=config["docking"]["exhaustiveness"],
        refined=plan.e2e_refine,
        wall_seconds=round(wall, 1),
        compounds_per_hour=round(rate, 1),
        stages={
            s: dict(
                jobs=int(r.jobs),
                seconds=round(r.seconds, 1),
                cpu_seconds=round(r.cpu_seconds, 1),
                share_of_job_seconds=round(r.seconds / total, 3),
            )
            for s, r in stages.iterrows()
        },
        baseline=dict(
            setting="vina CLI docking the same prepared ligands alone (same box, exhaustiveness, seed; "
            f"{cores} batch processes x 1 CPU)",
            seconds=round(vina_s, 1),
            compounds_per_hour=round(vina_rate, 1),
        ),
        ratio_vs_docking_alone=round(rate / vina_rate, 3),
        note="stage seconds are the sums of Snakemake's per-job wall times (jobs run 2 at a time, so they add up "
        "to more than the wall time); the end-to-end time includes Snakemake's own start-up and scheduling",
    )
    print(
        f"end to end: {len(mixed)} demo compounds ({ranked} ranked, {failed} failed) in {wall:.0f} s = "
        f"{rate:.1f} compounds/h; vina CLI docking alone {vina_rate:.1f}/h; ratio {result['ratio_vs_docking_alone']}"
    )
    for stage, r in result["stages"].items():
        print(f"    {stage:<18} {r['jobs']:>3} jobs {r['seconds']:>8.1f} s  ({100 * r['share_of_job_seconds']:4.1f}%)")
    return result


# ----------------------------------------------------------------------------- driver


def summary_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(figure, value, baseline, ratio) rows of the table."""
    rows = []
    d = results.get("docking")
    if d:
        e = d["engines"]
        rows.append(
            (
                "docking, pipeline (ligands/h)",
                f"{e['pipeline']['ligands_per_hour']:.1f}",
                f"vina {e['vina CLI']['version'].split()[-1]} CLI {e['vina CLI']['ligands_per_hour']:.1f}",
                f"{d['ratio_pipeline_vs_cli']:.3f}",
            )
        )
        rows.append(
            (
                "docking, pipeline (ligands/h)",
                f"{e['pipeline']['ligands_per_hour']:.1f}",
                f"vina 1.1.2 (dockstring) {e['vina 1.1.2']['ligands_per_hour']:.1f}",
                f"{d['ratio_pipeline_vs_112']:.3f}",
            )
        )
    for key in ("md", "md_gpu"):
        m = results.get(key)
        if m:
            rows.append(
                (
                    f"MD {m['platform']}, {m['atoms_simulated']} atoms (ns/day)",
                    f"{m['ns_per_day']:.2f}",
                    f"whole receptor, {m['baseline']['atoms_simulated']} atoms {m['baseline']['ns_per_day']:.2f}",
                    f"{m['ratio_ns_per_day_vs_whole_receptor']:.2f}",
                )
            )
            before = m.get("protocol_before")
            rows.append(
                (
                    f"MD {m['platform']} (poses/h)",
                    f"{m['poses_per_hour']:.1f}",
                    f"no warm-up/retry {before['poses_per_hour']:.1f}" if before else "",
                    f"{m['ratio_poses_per_hour_vs_protocol_before']:.3f}" if before else "",
                )
            )
    if results.get("md") and results.get("md_gpu"):
        cpu, gpu = results["md"], results["md_gpu"]
        rows.append(
            (
                f"MD {gpu['platform']} vs CPU, same machine (poses/h)",
                f"{gpu['poses_per_hour']:.1f}",
                f"CPU {cpu['poses_per_hour']:.1f}",
                f"{gpu['poses_per_hour'] / cpu['poses_per_hour']:.2f}",
            )
        )
    for key, label in (("featurize", "featurize"), ("score", "GNN scoring")):
        f = results.get(key)
        if f:
            rows.append(
                (
                    f"{label}, 2 Dask workers (complexes/s)",
                    f"{f['complexes_per_second_2_workers']:.1f}",
                    f"1 worker {f['complexes_per_second_1_worker']:.1f}",
                    f"{f['ratio_2_vs_1_workers']:.2f}",
                )
            )
    if results.get("score") and results.get("score_gpu"):
        cpu, gpu = ({r["workers"]: r for r in results[k]["runs"]} for k in ("score", "score_gpu"))
        rows.append(
            (
                "GNN scoring CUDA, in-process (complexes/s)",
                f"{gpu[0]['warm_rate']:.1f}",
                f"CPU in-process {cpu[0]['warm_rate']:.1f}",
                f"{gpu[0]['warm_rate'] / cpu[0]['warm_rate']:.2f}",
            )
        )
        g = results["score_gpu"]
        rows.append(
            (
                "GNN scoring CUDA, 2 Dask workers (complexes/s)",
                f"{g['complexes_per_second_2_workers']:.1f}",
                f"1 worker {g['complexes_per_second_1_worker']:.1f}",
                f"{g['ratio_2_vs_1_workers']:.2f}",
            )
        )
    t = results.get("end_to_end")
    if t:
        rows.append(
            (
                "end to end, demo config (compounds/h)",
                f"{t['compounds_per_hour']:.1f}",
                f"vina CLI docking alone {t['baseline']['compounds_per_hour']:.1f}",
                f"{t['ratio_vs_docking_alone']:.3f}",
            )
        )
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> str:
    header = ("figure", "value", "baseline (same run)", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    text = "\n".join(lines)
    print(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: under 15 minutes on 2 cores")
    parser.add_argument(
        "--only", nargs="*", choices=["docking", "md", "featurize", "score", "end_to_end"], help="run only these parts"
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument(
        "--score-complexes",
        type=int,
        default=None,
        help="complexes scored by the GNN benchmark (default: the plan's; more gives a GPU work)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default results/<machine>-<date>.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import distributed  # noqa: F401  (creates its loggers so that they can be quietened)

    for name in [n for n in logging.root.manager.loggerDict if n.startswith("distributed")]:
        logging.getLogger(name).setLevel(logging.ERROR)
    plan = QUICK if args.quick else FULL
    if args.score_complexes:
        plan = replace(plan, score_complexes=args.score_complexes)
    parts = args.only or ["docking", "md", "featurize", "score", "end_to_end"]
    gpu = gpu_name()
    load_before, start = os.getloadavg(), time.perf_counter()
    results: dict = {}
    seconds: dict = {}
    for part in parts:
        t0 = time.perf_counter()
        print(f"== {part}", flush=True)
        if part == "docking":
            results["docking"] = bench_docking(plan, args.cores)
        elif part == "md":
            results["md"] = bench_md(plan, "CPU")
            if gpu:
                results["md_gpu"] = bench_md(plan, "CUDA")
        elif part == "featurize":
            results["featurize"] = bench_featurize(plan)
        elif part == "score":
            results["score"] = bench_score(plan, "cpu")
            if gpu:
                results["score_gpu"] = bench_score(plan, "cuda")
        elif part == "end_to_end":
            results["end_to_end"] = bench_end_to_end(plan, args.cores)
        seconds[part] = round(time.perf_counter() - t0, 1)
    total = time.perf_counter() - start
    print()
    table = print_table(summary_rows(results))
    print(
        f"\n{'quick' if args.quick else 'full'} run: {total / 60:.1f} min; load average {load_before[0]:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs; GPU: {gpu or 'none'}"
    )
    date = time.strftime("%Y-%m-%d")
    out = args.out or HERE / "results" / f"{machine_name()}-{date}.json"
    document = dict(
        benchmark="run",
        mode="quick" if args.quick else "full",
        date=date,
        command="python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        plan=plan.__dict__,
        machine=dict(
            name=machine_name(),
            platform=platform.platform(),
            cpus=os.cpu_count(),
            python=platform.python_version(),
            gpu=gpu,
            load_average_before=[round(x, 2) for x in load_before],
            load_average_after=[round(x, 2) for x in os.getloadavg()],
        ),
        seconds=dict(seconds, total=round(total, 1)),
        table=table,
        results=results,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, default=str) + "\n")
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    main()
