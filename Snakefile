# vscreen workflow: split -> prepare receptor / ligands -> dock -> featurize -> refine -> score -> rank -> report;
# 'snakemake train' ends in a new model instead (the library is the assay table).
# Each rule is a thin call of the `vscreen` CLI (see `vscreen --help`), so every stage
# also runs by hand. Outputs go to results/<run>/; chunks make a killed run resumable.

from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import DeploymentMethod

from pipeline.config import ConfigError, validate_config, write_resolved_config
from pipeline.errors import user_errors
from pipeline.preflight import check_inputs, check_model


# The shipped demo config is the default; a --configfile replaces it (rather than being
# merged into it, which would mix the demo's receptor and box into a user's screen).
if not workflow.overwrite_configfiles:

    configfile: Path(workflow.basedir) / "config" / "config.yaml"


try:
    CFG = validate_config(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

# A missing receptor or library file, an empty library or a box off the protein stops the
# run here, before any job, with one sentence saying what to fix (jobs that a cluster
# executor starts on other nodes parse this file again and skip the check).
if workflow.is_main_process:
    try:
        check_inputs(CFG)
    except user_errors() as err:
        raise WorkflowError(str(err)) from None

# A relative score.models_dir is looked up in the working directory, then next to this
# Snakefile (where the shipped models/default lives), so the default model is found from any
# --directory; the resolved, absolute folder goes into the run config the jobs read.
_models = Path(CFG["score"]["models_dir"])
if not _models.is_absolute() and not _models.is_dir() and (Path(workflow.basedir) / _models).is_dir():
    CFG["score"]["models_dir"] = str(Path(workflow.basedir) / _models)

RUN = f"results/{CFG['run']}"
RESOLVED_CONFIG = f"{RUN}/config.yaml"
write_resolved_config(CFG, RESOLVED_CONFIG)
LIB, REC, BOX = CFG["library"], CFG["receptor"], CFG["box"]
LIG, DOCK = CFG["ligands"], CFG["docking"]
SCORE, TRAIN = CFG["score"], CFG["train"]


wildcard_constraints:
    chunk=r"chunk_\d+",
    batch=r"batch_\d+",


def q(value) -> str:
    """Shell-quote a value for a command line."""
    import shlex

    return shlex.quote(str(value))


# Per-rule conda environments (envs/*.yaml, the rules' `conda:` directives) are used with
# --software-deployment-method conda; the pip install stays the default. A conda environment
# does not hold this package, so there `vscreen` runs from this checkout.
if DeploymentMethod.CONDA in getattr(workflow.deployment_settings, "deployment_method", ()):
    shell.prefix(f"set -euo pipefail; export PYTHONPATH={q(workflow.basedir)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
                 'vscreen() {{ python -m pipeline.cli "$@"; }}; ')


def chunks(wildcards) -> list[str]:
    """Chunk names, known once the split checkpoint has run."""
    folder = checkpoints.split_library.get().output.chunks
    return sorted(p.stem for p in Path(folder).glob("chunk_*.parquet"))


def per_chunk(pattern: str):
    return lambda wildcards: [pattern.format(run=RUN, chunk=c) for c in chunks(wildcards)]


def receptor_inputs() -> list[str]:
    files = [REC["path"], BOX["reference_ligand"], BOX["vina_config"]]
    return [f for f in files if f]


def receptor_args() -> str:
    args = [f"--receptor {q(REC['path'])}" if REC["path"] else f"--dockstring {q(REC['dockstring'])}",
            f"--ph {REC['ph']}"]
    if REC["keep_waters"]:
        args.append("--keep-waters")
    if REC["keep_heterogens"]:
        args.append("--keep-heterogens " + " ".join(map(q, REC["keep_heterogens"])))
    if BOX["center"]:
        args.append("--center {} {} {} --size {} {} {}".format(*BOX["center"], *BOX["size"]))
    elif BOX["reference_ligand"]:
        args.append(f"--reference-ligand {q(BOX['reference_ligand'])} --padding {BOX['padding']}")
    elif BOX["vina_config"]:
        args.append(f"--vina-config {q(BOX['vina_config'])}")
    return " ".join(args)


report: "report/workflow.rst"


rule all:
    input:
        f"{RUN}/ranking.csv",
        f"{RUN}/failures.csv",
        f"{RUN}/report.html",
        f"{RUN}/top_hits.sdf",


checkpoint split_library:
    input:
        LIB["path"],
    output:
        chunks=directory(f"{RUN}/chunks"),
        failures=f"{RUN}/failures/input.csv",
    params:
        args=(f"--chunk-size {LIB['chunk_size']} --format {LIB['format']} --id-column {q(LIB['id_column'])} "
              f"--smiles-column {q(LIB['smiles_column'])}"
              + (f" --id-property {q(LIB['id_property'])}" if LIB["id_property"] else "")),
    log:
        f"{RUN}/logs/split.log",
    benchmark:
        f"{RUN}/benchmarks/split_library/job.tsv",
    conda:
        "envs/docking.yaml"
    shell:
        "vscreen split {input:q} --out-dir {output.chunks} --failures {output.failures} {params.args} 2>&1 | tee {log}"


rule prepare_receptor:
    input:
        receptor_inputs(),
    output:
        pdb=f"{RUN}/receptor/receptor.pdb",
        pdbqt=f"{RUN}/receptor/receptor.pdbqt",
        box=f"{RUN}/receptor/box.json",
        report=f"{RUN}/receptor/receptor.json",
    params:
        args=receptor_args(),
    log:
        f"{RUN}/logs/prepare_receptor.log",
    benchmark:
        f"{RUN}/benchmarks/prepare_receptor/job.tsv",
    conda:
        "envs/docking.yaml"
    shell:
        "vscreen prepare-receptor {params.args} --out-dir {RUN}/receptor 2>&1 | tee {log}"


rule prepare_ligands:
    input:
        f"{RUN}/chunks/{{chunk}}.parquet",
    output:
        sdf=f"{RUN}/ligands/{{chunk}}.sdf",
        table=f"{RUN}/ligands/{{chunk}}.parquet",
        failures=f"{RUN}/ligands/{{chunk}}.failures.csv",
    params:
        args=(f"--ph {LIG['ph']} --seed {CFG['seed']} --max-heavy-atoms {LIG['max_heavy_atoms']} "
              f"--min-heavy-atoms {LIG['min_heavy_atoms']} --embed-attempts {LIG['embed_attempts']}"),
    log:
        f"{RUN}/logs/prepare_ligands/{{chunk}}.log",
    benchmark:
        f"{RUN}/benchmarks/prepare_ligands/{{chunk}}.tsv",
    conda:
        "envs/docking.yaml"
    shell:
        "vscreen prepare-ligands {input} --out-dir {RUN}/ligands {params.args} 2>&1 | tee {log}"


rule dock:
    input:
        ligands=f"{RUN}/ligands/{{chunk}}.parquet",
        pdbqt=rules.prepare_receptor.output.pdbqt,
        box=rules.prepare_receptor.output.box,
    output:
        sdf=f"{RUN}/docked/{{chunk}}.sdf",
        table=f"{RUN}/docked/{{chunk}}.parquet",
        failures=f"{RUN}/docked/{{chunk}}.failures.csv",
    threads: DOCK["threads"]
    resources:
        mem_mb=2000,
    params:
        args=(f"--exhaustiveness {DOCK['exhaustiveness']} --n-poses {DOCK['n_poses']} "
              f"--energy-range {DOCK['energy_range']} --seed {CFG['seed']} --scoring {DOCK['scoring']}"),
    log:
        f"{RUN}/logs/dock/{{chunk}}.log",
    benchmark:
        f"{RUN}/benchmarks/dock/{{chunk}}.tsv",
    conda:
        "envs/docking.yaml"
    shell:
        "vscreen dock {input.ligands} --receptor-dir {RUN}/receptor --out-dir {RUN}/docked "
        "{params.args} --threads {threads} 2>&1 | tee {log}"


rule featurize:
    input:
        docked=f"{RUN}/docked/{{chunk}}.sdf",
        table=f"{RUN}/docked/{{chunk}}.parquet",
        receptor=rules.prepare_receptor.output.pdb,
    output:
        table=f"{RUN}/features/{{chunk}}.parquet",
        graphs=f"{RUN}/graphs/{{chunk}}.pt",
        failures=f"{RUN}/features/{{chunk}}.failures.csv",
    threads: CFG["dask"]["n_workers"] * CFG["dask"]["threads_per_worker"] if CFG["dask"]["scheduler"] == "local" else 1
    params:
        settings=str(sorted(CFG["featurize"].items())) + str(sorted(CFG["dask"].items())),
    log:
        f"{RUN}/logs/featurize/{{chunk}}.log",
    benchmark:
        f"{RUN}/benchmarks/featurize/{{chunk}}.tsv",
    conda:
        "envs/ml.yaml"
    shell:
        "vscreen featurize {input.docked} --receptor {input.receptor} --out-dir {RUN} "
        "--config {RESOLVED_CONFIG} 2>&1 | tee {log}"


def docked_chunk_files(wildcards) -> list[str]:
    return per_chunk("{run}/docked/{chunk}.parquet")(wildcards) + per_chunk("{run}/docked/{chunk}.sdf")(wildcards)


checkpoint select_poses:
    input:
        docked_chunk_files,
    output:
        batches=directory(f"{RUN}/refine_batches"),
    params:
        settings=str([CFG["refine"][k] for k in ("enabled", "top_n", "top_fraction", "poses_per_compound", "batch_size")]),
    log:
        f"{RUN}/logs/select_poses.log",
    benchmark:
        f"{RUN}/benchmarks/select_poses/job.tsv",
    conda:
        "envs/md.yaml"
    shell:
        "vscreen select --run-dir {RUN} --out-dir {output.batches} --config {RESOLVED_CONFIG} 2>&1 | tee {log}"


def refine_batches(wildcards) -> list[str]:
    folder = checkpoints.select_poses.get().output.batches
    return sorted(p.stem for p in Path(folder).glob("batch_*.parquet"))


def per_batch(pattern: str):
    return lambda wildcards: [pattern.format(run=RUN, batch=b) for b in refine_batches(wildcards)]


rule refine:
    input:
        batch=f"{RUN}/refine_batches/{{batch}}.parquet",
        receptor=rules.prepare_receptor.output.pdb,
        docked=docked_chunk_files,
    output:
        sdf=f"{RUN}/refined/{{batch}}.sdf",
        table=f"{RUN}/refined/{{batch}}.parquet",
        failures=f"{RUN}/refined/{{batch}}.failures.csv",
    threads: CFG["refine"]["cpu_threads"] or 2 if CFG["refine"]["platform"] in ("auto", "CPU") else 1
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        settings=str(sorted(CFG["refine"].items())) + str(CFG["seed"]),
    log:
        f"{RUN}/logs/refine/{{batch}}.log",
    benchmark:
        f"{RUN}/benchmarks/refine/{{batch}}.tsv",
    conda:
        "envs/md.yaml"
    shell:
        "vscreen refine {input.batch} --run-dir {RUN} --config {RESOLVED_CONFIG} 2>&1 | tee {log}"


rule featurize_refined:
    input:
        sdf=f"{RUN}/refined/{{batch}}.sdf",
        table=f"{RUN}/refined/{{batch}}.parquet",
        receptor=rules.prepare_receptor.output.pdb,
    output:
        table=f"{RUN}/features/{{batch}}.parquet",
        graphs=f"{RUN}/graphs/{{batch}}.pt",
        failures=f"{RUN}/features/{{batch}}.failures.csv",
    threads: CFG["dask"]["n_workers"] * CFG["dask"]["threads_per_worker"] if CFG["dask"]["scheduler"] == "local" else 1
    params:
        settings=str(sorted(CFG["featurize"].items())) + str(sorted(CFG["dask"].items())),
    log:
        f"{RUN}/logs/featurize/{{batch}}.log",
    benchmark:
        f"{RUN}/benchmarks/featurize_refined/{{batch}}.tsv",
    conda:
        "envs/ml.yaml"
    shell:
        "vscreen featurize {input.sdf} --refined --receptor {input.receptor} --out-dir {RUN} "
        "--config {RESOLVED_CONFIG} 2>&1 | tee {log}"


def graph_files(wildcards) -> list[str]:
    return per_chunk("{run}/graphs/{chunk}.pt")(wildcards) + per_batch("{run}/graphs/{batch}.pt")(wildcards)


def model_card(wildcards) -> str:
    """The scoring model's card; an unknown or unreadable model stops the DAG build, before any job runs."""
    try:
        return str(check_model(SCORE) / "card.json")
    except user_errors() as err:
        raise WorkflowError(str(err)) from None


rule score:
    input:
        model=model_card,
        graphs=graph_files,
    output:
        f"{RUN}/scores.parquet",
    threads: CFG["dask"]["n_workers"] * CFG["dask"]["threads_per_worker"] if CFG["dask"]["scheduler"] == "local" else 1
    resources:
        gpu=1 if SCORE["device"] == "cuda" else 0,
    params:
        settings=str(sorted(SCORE.items())),
    log:
        f"{RUN}/logs/score.log",
    benchmark:
        f"{RUN}/benchmarks/score/job.tsv",
    conda:
        "envs/ml.yaml"
    shell:
        "vscreen score --run-dir {RUN} --config {RESOLVED_CONFIG} 2>&1 | tee {log}"


if TRAIN["name"]:

    rule train:
        input:
            graphs=graph_files,
            assay=LIB["path"],
        output:
            card=f"{TRAIN['models_dir']}/{TRAIN['name']}/card.json",
            failures=f"{RUN}/train_failures.csv",
        threads: workflow.cores
        params:
            settings=str(sorted(TRAIN.items())),
        log:
            f"{RUN}/logs/train.log",
        benchmark:
            f"{RUN}/benchmarks/train/job.tsv",
        conda:
            "envs/ml.yaml"
        shell:
            "vscreen train --run-dir {RUN} --config {RESOLVED_CONFIG} 2>&1 | tee {log}"

else:

    rule train:
        run:
            raise WorkflowError("'snakemake train' needs a model name: set train.name in the config "
                                "(e.g. --config train='{name: mymodel}'); the library must be the assay table")


rule rank:
    input:
        scores=[f"{RUN}/scores.parquet"] if SCORE["enabled"] else [],
        inputs=f"{RUN}/failures/input.csv",
        refined=per_batch("{run}/refined/{batch}.parquet"),
        refine_failures=per_batch("{run}/refined/{batch}.failures.csv"),
        refined_features=per_batch("{run}/features/{batch}.parquet"),
        refined_feature_failures=per_batch("{run}/features/{batch}.failures.csv"),
        features=per_chunk("{run}/features/{chunk}.parquet"),
        feature_failures=per_chunk("{run}/features/{chunk}.failures.csv"),
        receptor=rules.prepare_receptor.output.report,
        ligands=per_chunk("{run}/ligands/{chunk}.failures.csv"),
        docked=per_chunk("{run}/docked/{chunk}.parquet"),
        dock_failures=per_chunk("{run}/docked/{chunk}.failures.csv"),
    output:
        ranking=report(f"{RUN}/ranking.csv", caption="report/ranking.rst", category="2. Ranking"),
        failures=f"{RUN}/failures.csv",
    log:
        f"{RUN}/logs/rank.log",
    benchmark:
        f"{RUN}/benchmarks/rank/job.tsv",
    conda:
        "envs/docking.yaml"
    shell:
        "vscreen rank --run-dir {RUN} --config {RESOLVED_CONFIG} 2>&1 | tee {log}"


rule report:
    input:
        ranking=rules.rank.output.ranking,
        failures=rules.rank.output.failures,
        docked=docked_chunk_files,
        features=per_chunk("{run}/features/{chunk}.parquet"),
        refined=per_batch("{run}/refined/{batch}.sdf"),
        refined_tables=per_batch("{run}/refined/{batch}.parquet"),
        library=LIB["path"],
    output:
        html=report(f"{RUN}/report.html", caption="report/report.rst", category="1. Screening report"),
        top_hits=report(f"{RUN}/top_hits.sdf", caption="report/top_hits.rst", category="2. Ranking"),
        figures=report(directory(f"{RUN}/figures"), patterns=["{name}.png"], caption="report/figures.rst",
                       category="3. Figures", labels={"figure": "{name}"}),
    params:
        settings=str(sorted(CFG["report"].items())),
    log:
        f"{RUN}/logs/report.log",
    benchmark:
        f"{RUN}/benchmarks/report/job.tsv",
    conda:
        "envs/ml.yaml"
    shell:
        "vscreen report --run-dir {RUN} --config {RESOLVED_CONFIG} 2>&1 | tee {log}"
