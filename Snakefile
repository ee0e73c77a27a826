# vscreen workflow: split -> prepare receptor / ligands -> dock -> featurize -> refine -> score -> rank -> report;
# 'snakemake train' ends in a new model instead (the library is the assay table).
# Each rule is a thin call of the `vscreen` CLI (see `vscreen --help`), so every stage
# also runs by hand. Outputs go to results/<run>/; chunks make a killed run resumable.

from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import DeploymentMethod

from pipeline.config import ConfigError, typed_command_line_config, validate_config, write_resolved_config
from pipeline.errors import user_errors
from pipeline.layout import RunLayout
from pipeline.preflight import check_inputs, check_model
from pipeline import runlock


# The shipped demo config is the default; a --configfile replaces it (rather than being
# merged into it, which would mix the demo's receptor and box into a user's screen).
if not workflow.overwrite_configfiles:

    configfile: Path(workflow.basedir) / "config" / "config.yaml"


try:
    # --config docking='{exhaustiveness: 16}' reaches here as the string '16' (Snakemake types only
    # top-level values): nested strings get the schema's type first
    CFG = validate_config(typed_command_line_config(config))
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
LAYOUT = RunLayout(RUN)  # every file of the run is named by it: rules, CLI and report agree
RESOLVED_CONFIG = str(LAYOUT.config)
write_resolved_config(CFG, RESOLVED_CONFIG)
LIB, REC, BOX = CFG["library"], CFG["receptor"], CFG["box"]
DOCK = CFG["docking"]
SCORE, TRAIN = CFG["score"], CFG["train"]


def pair_graph_tag() -> str:
    """'' for complex graphs; for a pair model (score.model, or train.scorer pair in a training run), its
    pair-graph schema, which featurize writes.

    Featurization reads the same config and decides with the same function
    (pipeline.scoring.pair_folder.pair_schema_for_run); the tag goes into the featurize rules' params, so
    switching between model kinds featurizes again.
    """
    import hashlib
    import json

    from pipeline.scoring.pair_folder import pair_schema_for_run

    try:
        schema = pair_schema_for_run(CFG)
    except user_errors() as err:
        raise WorkflowError(str(err)) from None
    if schema is None:
        return ""
    digest = hashlib.sha256(json.dumps(schema.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    return f" pair graphs {schema.version} {digest}"


PAIR_GRAPHS = pair_graph_tag()
# only a pair model reads the docking PDBQT in featurize; complex-graph runs keep their inputs as they were
PAIR_INPUT = {"pdbqt": str(LAYOUT.receptor_pdbqt)} if PAIR_GRAPHS else {}


def pair_arg(wildcards, input) -> str:
    """The featurize flag that hands a pair model the docking PDBQT (empty for complex graphs)."""
    return f"--receptor-pdbqt {input.pdbqt}" if PAIR_GRAPHS else ""


wildcard_constraints:
    chunk=r"chunk_\d+",
    batch=r"batch_\d+",


def run_folder(wildcards) -> str:
    """The run folder, for subcommands that find a rule's files in it through RunLayout (the same
    object names the rule's input and output above, so both agree)."""
    return str(LAYOUT.root)


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


# One Snakemake process per run: the lock names its owner, and a lock left by a killed run
# is taken over (profiles/default turns Snakemake's own lock off and reruns incomplete jobs).
onstart:
    try:
        runlock.acquire(RUN)
    except user_errors() as err:
        raise WorkflowError(str(err)) from None


onsuccess:
    runlock.release(RUN)


onerror:
    runlock.release(RUN)


def chunks(wildcards) -> list[str]:
    """Chunk names from the split's manifest, known once the split checkpoint has run."""
    checkpoints.split_library.get()
    return LAYOUT.chunks()


def per_chunk(path_of):
    """Input function: ``path_of(chunk)`` (a RunLayout method) for every chunk of the run."""
    return lambda wildcards: [str(path_of(c)) for c in chunks(wildcards)]


def receptor_inputs() -> list[str]:
    files = [REC["path"], BOX["reference_ligand"], BOX["vina_config"]]
    return [f for f in files if f]


def settings_of(*paths: str) -> str:
    """The config values a rule's job reads, as a params entry: the job reads them from the resolved
    config file, and Snakemake reruns the job when one of them changes (the params rerun trigger)."""
    values = {}
    for path in paths:
        node = CFG
        for part in path.split("."):
            node = node[part]
        values[path] = node
    return str(sorted(values.items()))


report: "report/workflow.rst"


# screen.strategy: active docks a fraction of the library chosen round by round (rule active_screen)
ACTIVE = CFG["screen"]["strategy"] == "active"
ACTIVE_TABLES = ("docked", "predicted", "failures", "rounds")


rule all:
    input:
        [str(LAYOUT.active_table(t)) for t in ACTIVE_TABLES] + [str(LAYOUT.input_failures)]
        if ACTIVE
        else [str(LAYOUT.ranking), str(LAYOUT.failures), str(LAYOUT.report_html), str(LAYOUT.top_hits)],


checkpoint split_library:
    input:
        LIB["path"],
    output:
        chunks=directory(str(LAYOUT.chunks_dir)),
        failures=str(LAYOUT.input_failures),
    params:
        config=RESOLVED_CONFIG,
        settings=settings_of("library", "docking.mode"),
    log:
        f"{RUN}/logs/split.log",
    benchmark:
        f"{RUN}/benchmarks/split_library/job.tsv",
    conda:
        "envs/docking.yaml"
    shell:
        "vscreen split {input:q} --out-dir {output.chunks} --failures {output.failures} --config {params.config} "
        "2>&1 | tee {log}"


rule prepare_receptor:
    input:
        receptor_inputs(),
    output:
        pdb=str(LAYOUT.receptor_pdb),
        pdbqt=str(LAYOUT.receptor_pdbqt),
        box=str(LAYOUT.box_json),
        report=str(LAYOUT.receptor_report),
    params:
        run=run_folder,
        config=RESOLVED_CONFIG,
        settings=settings_of("receptor", "box"),
    log:
        f"{RUN}/logs/prepare_receptor.log",
    benchmark:
        f"{RUN}/benchmarks/prepare_receptor/job.tsv",
    conda:
        "envs/docking.yaml"
    shell:
        "vscreen prepare-receptor --config {params.config} --out-dir {params.run}/receptor 2>&1 | tee {log}"


rule prepare_ligands:
    input:
        str(LAYOUT.chunk_table("{chunk}")),
    output:
        sdf=str(LAYOUT.ligand_sdf("{chunk}")),
        table=str(LAYOUT.ligand_table("{chunk}")),
        failures=str(LAYOUT.ligand_failures("{chunk}")),
    params:
        run=run_folder,
        config=RESOLVED_CONFIG,
        settings=settings_of("ligands", "seed", "docking.mode"),
    log:
        f"{RUN}/logs/prepare_ligands/{{chunk}}.log",
    benchmark:
        f"{RUN}/benchmarks/prepare_ligands/{{chunk}}.tsv",
    conda:
        "envs/docking.yaml"
    shell:
        "vscreen prepare-ligands {input} --out-dir {params.run}/ligands --config {params.config} 2>&1 | tee {log}"


rule dock:
    input:
        ligands=str(LAYOUT.ligand_table("{chunk}")),
        pdbqt=rules.prepare_receptor.output.pdbqt,
        box=rules.prepare_receptor.output.box,
    output:
        sdf=str(LAYOUT.docked_sdf("{chunk}")),
        table=str(LAYOUT.docked_table("{chunk}")),
        failures=str(LAYOUT.docked_failures("{chunk}")),
    threads: DOCK["threads"]
    resources:
        mem_mb=2000,
    params:
        run=run_folder,
        config=RESOLVED_CONFIG,
        settings=settings_of("docking", "seed", "box.reference_ligand"),
    log:
        f"{RUN}/logs/dock/{{chunk}}.log",
    benchmark:
        f"{RUN}/benchmarks/dock/{{chunk}}.tsv",
    conda:
        "envs/docking.yaml"
    # --threads: the job's threads as Snakemake grants them (docking.threads, fewer under a smaller --cores)
    shell:
        "vscreen dock {input.ligands} --receptor-dir {params.run}/receptor --out-dir {params.run}/docked "
        "--config {params.config} --threads {threads} 2>&1 | tee {log}"


# An active screen is one job that runs its rounds (seeded random sample, then batches chosen by
# the surrogate) and saves each round's batch and the loop state atomically: a killed job rerun by
# Snakemake resumes from its last saved round and docks what an uninterrupted run docks.
rule active_screen:
    input:
        chunks=per_chunk(LAYOUT.chunk_table),
        pdbqt=rules.prepare_receptor.output.pdbqt,
        box=rules.prepare_receptor.output.box,
        config=RESOLVED_CONFIG,
    output:
        [str(LAYOUT.active_table(t)) for t in ACTIVE_TABLES],
    params:
        run=run_folder,
        out=lambda wildcards, output: str(Path(output[0]).parent),
    log:
        f"{RUN}/logs/active_screen.log",
    benchmark:
        f"{RUN}/benchmarks/active_screen/job.tsv",
    conda:
        "envs/ml.yaml"
    shell:
        "vscreen active {input.chunks} --config {input.config} --receptor-dir {params.run}/receptor "
        "--out-dir {params.out} 2>&1 | tee {log}"


rule featurize:
    input:
        docked=str(LAYOUT.docked_sdf("{chunk}")),
        table=str(LAYOUT.docked_table("{chunk}")),
        receptor=rules.prepare_receptor.output.pdb,
        **PAIR_INPUT,
    output:
        table=str(LAYOUT.feature_table("{chunk}")),
        graphs=str(LAYOUT.graph_file("{chunk}")),
        failures=str(LAYOUT.feature_failures("{chunk}")),
    threads: CFG["dask"]["n_workers"] * CFG["dask"]["threads_per_worker"] if CFG["dask"]["scheduler"] == "local" else 1
    params:
        run=run_folder,
        config=RESOLVED_CONFIG,
        settings=str(sorted(CFG["featurize"].items())) + str(sorted(CFG["dask"].items())) + PAIR_GRAPHS,
        pair_arg=pair_arg,
    log:
        f"{RUN}/logs/featurize/{{chunk}}.log",
    benchmark:
        f"{RUN}/benchmarks/featurize/{{chunk}}.tsv",
    conda:
        "envs/ml.yaml"
    shell:
        "vscreen featurize {input.docked} --receptor {input.receptor} {params.pair_arg} --out-dir {params.run} "
        "--config {params.config} 2>&1 | tee {log}"


def docked_chunk_files(wildcards) -> list[str]:
    return per_chunk(LAYOUT.docked_table)(wildcards) + per_chunk(LAYOUT.docked_sdf)(wildcards)


# refine.select_by score | ucb: the scorer chooses the poses for MD, so the docked poses are scored first,
# alone (the score rule proper scores them again with the refined complexes, after MD)
SELECT_BY_MODEL = CFG["refine"]["enabled"] and CFG["refine"]["select_by"] != "docking"


checkpoint select_poses:
    input:
        docked=docked_chunk_files,
        scores=[str(LAYOUT.docked_scores)] if SELECT_BY_MODEL else [],
    output:
        batches=directory(str(LAYOUT.batches_dir)),
    params:
        run=run_folder,
        config=RESOLVED_CONFIG,
        settings=str([CFG["refine"][k] for k in ("enabled", "top_n", "top_fraction", "poses_per_compound", "batch_size",
                                                 "select_by", "ucb_k")]),
    log:
        f"{RUN}/logs/select_poses.log",
    benchmark:
        f"{RUN}/benchmarks/select_poses/job.tsv",
    conda:
        "envs/md.yaml"
    shell:
        "vscreen select --run-dir {params.run} --out-dir {output.batches} --config {params.config} 2>&1 | tee {log}"


def refine_batches(wildcards) -> list[str]:
    """Batch names from the selection's manifest (never a glob: an earlier, larger selection leaves files)."""
    checkpoints.select_poses.get()
    return LAYOUT.batches()


def per_batch(path_of):
    """Input function: ``path_of(batch)`` (a RunLayout method) for every refinement batch of the run."""
    return lambda wildcards: [str(path_of(b)) for b in refine_batches(wildcards)]


def refine_threads() -> int:
    """Cores of a refine job: refine.workers x the CPU platform's threads (auto may be the CPU), a core per worker on a GPU."""
    section = CFG["refine"]
    per_worker = (section["cpu_threads"] or 2) if section["platform"] in ("auto", "CPU") else 1
    return per_worker * section["workers"]


rule refine:
    input:
        batch=str(LAYOUT.batch_table("{batch}")),
        receptor=rules.prepare_receptor.output.pdb,
        docked=docked_chunk_files,
    output:
        sdf=str(LAYOUT.refined_sdf("{batch}")),
        table=str(LAYOUT.refined_table("{batch}")),
        failures=str(LAYOUT.refined_failures("{batch}")),
    threads: refine_threads()
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        run=run_folder,
        config=RESOLVED_CONFIG,
        settings=str(sorted(CFG["refine"].items())) + str(CFG["seed"]),
    log:
        f"{RUN}/logs/refine/{{batch}}.log",
    benchmark:
        f"{RUN}/benchmarks/refine/{{batch}}.tsv",
    conda:
        "envs/md.yaml"
    shell:
        "vscreen refine {input.batch} --run-dir {params.run} --config {params.config} 2>&1 | tee {log}"


rule featurize_refined:
    input:
        sdf=str(LAYOUT.refined_sdf("{batch}")),
        table=str(LAYOUT.refined_table("{batch}")),
        receptor=rules.prepare_receptor.output.pdb,
        **PAIR_INPUT,
    output:
        table=str(LAYOUT.feature_table("{batch}")),
        graphs=str(LAYOUT.graph_file("{batch}")),
        failures=str(LAYOUT.feature_failures("{batch}")),
    threads: CFG["dask"]["n_workers"] * CFG["dask"]["threads_per_worker"] if CFG["dask"]["scheduler"] == "local" else 1
    params:
        run=run_folder,
        config=RESOLVED_CONFIG,
        settings=str(sorted(CFG["featurize"].items())) + str(sorted(CFG["dask"].items())) + PAIR_GRAPHS,
        pair_arg=pair_arg,
    log:
        f"{RUN}/logs/featurize/{{batch}}.log",
    benchmark:
        f"{RUN}/benchmarks/featurize_refined/{{batch}}.tsv",
    conda:
        "envs/ml.yaml"
    shell:
        "vscreen featurize {input.sdf} --refined --receptor {input.receptor} {params.pair_arg} --out-dir {params.run} "
        "--config {params.config} 2>&1 | tee {log}"


def graph_files(wildcards) -> list[str]:
    return per_chunk(LAYOUT.graph_file)(wildcards) + per_batch(LAYOUT.graph_file)(wildcards)


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
        receptor=rules.prepare_receptor.output.pdb,
        box=rules.prepare_receptor.output.box,
    output:
        scores=str(LAYOUT.scores),
        failures=str(LAYOUT.score_failures),
        domain=str(LAYOUT.domain),
    threads: CFG["dask"]["n_workers"] * CFG["dask"]["threads_per_worker"] if CFG["dask"]["scheduler"] == "local" else 1
    resources:
        gpu=1 if SCORE["device"] == "cuda" else 0,
    params:
        run=run_folder,
        config=RESOLVED_CONFIG,
        settings=str(sorted(SCORE.items())),
    log:
        f"{RUN}/logs/score.log",
    benchmark:
        f"{RUN}/benchmarks/score/job.tsv",
    conda:
        "envs/ml.yaml"
    shell:
        "vscreen score --run-dir {params.run} --config {params.config} 2>&1 | tee {log}"


rule score_docked:
    input:
        model=model_card,
        graphs=per_chunk(LAYOUT.graph_file),
    output:
        scores=str(LAYOUT.docked_scores),
    threads: CFG["dask"]["n_workers"] * CFG["dask"]["threads_per_worker"] if CFG["dask"]["scheduler"] == "local" else 1
    resources:
        gpu=1 if SCORE["device"] == "cuda" else 0,
    params:
        run=run_folder,
        config=RESOLVED_CONFIG,
        settings=str(sorted(SCORE.items())),
    log:
        f"{RUN}/logs/score_docked.log",
    benchmark:
        f"{RUN}/benchmarks/score_docked/job.tsv",
    conda:
        "envs/ml.yaml"
    shell:
        "vscreen score --docked-only --run-dir {params.run} --config {params.config} 2>&1 | tee {log}"


if TRAIN["name"]:

    # fine-tuning: the pretrained model's card is an input, so retraining that model retrains this one
    TRAIN_INIT = {}
    if TRAIN["scorer"] == "pair" and TRAIN["init_from"]:
        from pipeline.scoring.pair_folder import pretrained_pair_card

        try:
            _init = pretrained_pair_card(TRAIN["init_from"], TRAIN["models_dir"])[0]
        except user_errors() as err:
            raise WorkflowError(str(err)) from None
        if _init.resolve() == (Path(TRAIN["models_dir"]) / TRAIN["name"]).resolve():
            raise WorkflowError(f"train.init_from '{TRAIN['init_from']}' is the model this training writes; "
                                "give the fine-tuned model another train.name")
        TRAIN_INIT = {"init": str(_init / "card.json")}

    rule train:
        input:
            graphs=graph_files,
            assay=LIB["path"],
            receptor=rules.prepare_receptor.output.pdb,  # a pair model records its training pocket
            box=rules.prepare_receptor.output.box,
            **TRAIN_INIT,
        output:
            card=f"{TRAIN['models_dir']}/{TRAIN['name']}/card.json",
            failures=f"{RUN}/train_failures.csv",
        threads: workflow.cores
        params:
            run=run_folder,
            config=RESOLVED_CONFIG,
            settings=str(sorted(TRAIN.items())),
        log:
            f"{RUN}/logs/train.log",
        benchmark:
            f"{RUN}/benchmarks/train/job.tsv",
        conda:
            "envs/ml.yaml"
        shell:
            "vscreen train --run-dir {params.run} --config {params.config} 2>&1 | tee {log}"

else:

    rule train:
        log:
            f"{RUN}/logs/train.log",
        run:
            raise WorkflowError("'snakemake train' needs a model name: set train.name in the config "
                                "(e.g. --config train='{name: mymodel}'); the library must be the assay table")


rule rank:
    input:
        scores=[str(LAYOUT.scores), str(LAYOUT.score_failures), str(LAYOUT.domain)] if SCORE["enabled"] else [],
        inputs=str(LAYOUT.input_failures),
        refined=per_batch(LAYOUT.refined_table),
        refine_failures=per_batch(LAYOUT.refined_failures),
        refined_features=per_batch(LAYOUT.feature_table),
        refined_feature_failures=per_batch(LAYOUT.feature_failures),
        features=per_chunk(LAYOUT.feature_table),
        feature_failures=per_chunk(LAYOUT.feature_failures),
        receptor=rules.prepare_receptor.output.report,
        chunks=per_chunk(LAYOUT.chunk_table),
        batches=per_batch(LAYOUT.batch_table),
        ligand_tables=per_chunk(LAYOUT.ligand_table),
        ligands=per_chunk(LAYOUT.ligand_failures),
        docked=per_chunk(LAYOUT.docked_table),
        dock_failures=per_chunk(LAYOUT.docked_failures),
        # PoseBusters checks the top poses (refined or docked) against the receptor (report.check_poses)
        receptor_pdb=rules.prepare_receptor.output.pdb if CFG["report"]["check_poses"] else [],
        docked_poses=per_chunk(LAYOUT.docked_sdf) if CFG["report"]["check_poses"] else [],
        refined_poses=per_batch(LAYOUT.refined_sdf) if CFG["report"]["check_poses"] else [],
    output:
        ranking=report(str(LAYOUT.ranking), caption="report/ranking.rst", category="2. Ranking"),
        failures=str(LAYOUT.failures),
        warnings=str(LAYOUT.pose_warnings),
    params:
        run=run_folder,
        config=RESOLVED_CONFIG,
        pose_checks=str([CFG["report"][k] for k in ("check_poses", "check_poses_top_n", "top_n", "check_all_poses",
                                                     "rank_valid_first", "posebusters_config")]),
    log:
        f"{RUN}/logs/rank.log",
    benchmark:
        f"{RUN}/benchmarks/rank/job.tsv",
    conda:
        "envs/docking.yaml"
    shell:
        "vscreen rank --run-dir {params.run} --config {params.config} 2>&1 | tee {log}"


# Why each top hit's score (pipeline/scoring/explain.py): per-residue and per-contact shares of a pair
# model's score (its graphs, re-scored) and Vina's per-term breakdown; a compound that cannot be explained
# is a row saying why, never a failed job.
rule explain:
    input:
        ranking=rules.rank.output.ranking,
        scores=[str(LAYOUT.scores)] if SCORE["enabled"] else [],
        model=model_card if SCORE["enabled"] else [],
        graphs=graph_files if SCORE["enabled"] else [],
        pdbqt=rules.prepare_receptor.output.pdbqt,
        docked=docked_chunk_files,
        refined=per_batch(LAYOUT.refined_sdf),
        refined_tables=per_batch(LAYOUT.refined_table),
    output:
        explain=directory(str(LAYOUT.explain_dir)),
    params:
        run=run_folder,
        config=RESOLVED_CONFIG,
        settings=str(CFG["report"]["top_n"]) + str(sorted(SCORE.items())) + DOCK["scoring"] + PAIR_GRAPHS,
    log:
        f"{RUN}/logs/explain.log",
    benchmark:
        f"{RUN}/benchmarks/explain/job.tsv",
    conda:
        "envs/ml.yaml"
    shell:
        "vscreen explain --run-dir {params.run} --config {params.config} 2>&1 | tee {log}"


rule report:
    input:
        ranking=rules.rank.output.ranking,
        failures=rules.rank.output.failures,
        warnings=rules.rank.output.warnings,
        receptor=rules.prepare_receptor.output.report,
        box=rules.prepare_receptor.output.box,
        ligands=per_chunk(LAYOUT.ligand_table),
        docked=docked_chunk_files,
        features=per_chunk(LAYOUT.feature_table),
        batches=per_batch(LAYOUT.batch_table),
        refined=per_batch(LAYOUT.refined_sdf),
        refined_tables=per_batch(LAYOUT.refined_table),
        library=LIB["path"],
        explain=rules.explain.output.explain,
    output:
        html=report(str(LAYOUT.report_html), caption="report/report.rst", category="1. Screening report"),
        top_hits=report(str(LAYOUT.top_hits), caption="report/top_hits.rst", category="2. Ranking"),
        figures=report(directory(str(LAYOUT.figures_dir)), patterns=["{name}.png"], caption="report/figures.rst",
                       category="3. Figures", labels={"figure": "{name}"}),
    params:
        run=run_folder,
        config=RESOLVED_CONFIG,
        settings=str(sorted(CFG["report"].items())),
    log:
        f"{RUN}/logs/report.log",
    benchmark:
        f"{RUN}/benchmarks/report/job.tsv",
    conda:
        "envs/ml.yaml"
    shell:
        "vscreen report --run-dir {params.run} --config {params.config} 2>&1 | tee {log}"
