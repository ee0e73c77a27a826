"""The ``vscreen`` command: one subcommand per pipeline stage.

The Snakefile calls these subcommands; each also runs by hand, e.g.::

    vscreen split library.smi --out-dir results/mine/chunks --failures results/mine/failures/input.csv
    vscreen prepare-receptor --receptor protein.pdb --reference-ligand ligand.sdf --out-dir results/mine/receptor
    vscreen prepare-ligands results/mine/chunks/chunk_00000.parquet --out-dir results/mine/ligands
    vscreen dock results/mine/ligands/chunk_00000.parquet --receptor-dir results/mine/receptor --out-dir results/mine/docked
    vscreen rank --run-dir results/mine
    vscreen explain --run-dir results/mine
    vscreen report --run-dir results/mine

Every stage reads its settings from a run config (``--config mine.yaml``; the Snakefile passes
the run's resolved ``results/<run>/config.yaml`` and nothing else); without one it uses the
built-in defaults of ``pipeline/schema.yaml``. A settings flag (``--exhaustiveness 16``) overrides
the config's value for that call only; its ``--help`` names the config key and the built-in default.

Check a config and its inputs without running anything: ``vscreen check-config mine.yaml``.
``vscreen COMMAND --help`` explains each subcommand with an example.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from . import faults
from .config import schema_default, settings_from_mapping, settings_from_section
from .layout import RunLayout

log = logging.getLogger("vscreen")


def _chunk_outputs(chunk: str, out_dir: str) -> tuple[Path, Path, Path, Path]:
    stem = Path(chunk).name.split(".")[0]
    out = Path(out_dir)
    return out / f"{stem}.sdf", out / f"{stem}.parquet", out / f"{stem}.failures.csv", out


def cmd_check_config(args: argparse.Namespace) -> int:
    from .config import load_config
    from .preflight import check_inputs, check_model

    cfg = load_config(args.config)
    if not args.no_files:
        check_inputs(cfg)
        if cfg["score"]["enabled"]:
            check_model(cfg["score"])
    print(json.dumps(cfg, indent=1) if args.show else f"{args.config}: valid (run '{cfg['run']}')")
    return 0


#: ``--time-limit none`` on the command line: no limit (``None`` means "flag not given").
NO_LIMIT = "none"


def _config_with_flags(args: argparse.Namespace) -> dict:
    """The run config of ``--config`` (built-in defaults without one), with the flags given on the
    command line in place of the config's values.

    The overriding flags are the ones :func:`_override` added to the subcommand (default ``None``:
    not given).
    """
    cfg = _run_config(args.config)
    for dest, path in args.overrides:
        value = getattr(args, dest)
        if value is None:
            continue
        section, _, key = path.rpartition(".")
        (cfg[section] if section else cfg)[key] = None if value == NO_LIMIT else value
    return cfg


def cmd_split(args: argparse.Namespace) -> int:
    from .library import split_library

    cfg = _config_with_flags(args)
    lib = cfg["library"]
    keep_poses = cfg["docking"]["mode"] == "score_only" if args.keep_poses is None else args.keep_poses
    summary = split_library(
        args.library,
        args.out_dir,
        args.failures,
        lib["chunk_size"],
        lib["format"],
        lib["id_column"],
        lib["smiles_column"],
        lib["id_property"],
        keep_poses=keep_poses,
    )
    log.info(
        "split %s: %d rows, %d accepted, %d rejected, %d chunks",
        args.library,
        summary.rows,
        summary.accepted,
        summary.failed,
        summary.chunks,
    )
    return 0


BOX_CHOICES = ("center", "size", "reference_ligand", "vina_config")


def cmd_prepare_receptor(args: argparse.Namespace) -> int:
    from .box import box_from_config, check_box_on_receptor, read_pdb_coordinates
    from .config import ConfigError
    from .io import write_text_atomic
    from .receptor import prepare_receptor, resolve_receptor_source

    cfg = _config_with_flags(args)
    rec = cfg["receptor"]
    if args.receptor or args.dockstring:  # a receptor on the command line replaces the config's
        rec.update(path=args.receptor, dockstring=args.dockstring)
    spec = rec["path"] or rec["dockstring"]
    if not spec:
        raise ConfigError(
            "no receptor: give --receptor or --dockstring, or a --config with receptor.path or .dockstring"
        )
    box_cfg = dict(cfg["box"])
    given = {k: getattr(args, k) for k in BOX_CHOICES if getattr(args, k) is not None}
    if given:  # a box on the command line replaces the config's way of giving one
        box_cfg.update({k: None for k in BOX_CHOICES}, **given)
    source = resolve_receptor_source(spec)
    box = box_from_config(box_cfg, rec["dockstring"])
    out = Path(args.out_dir)
    report = prepare_receptor(
        source,
        out / "receptor.pdb",
        out / "receptor.pdbqt",
        ph=rec["ph"],
        keep_waters=rec["keep_waters"],
        keep_heterogens=rec["keep_heterogens"],
        box=box,  # untypable residues far from the box are removed, near ones rebuilt (or a clear error)
    )
    inside = check_box_on_receptor(box, read_pdb_coordinates(out / "receptor.pdb"))
    box.to_json(out / "box.json")
    write_text_atomic(out / "receptor.json", json.dumps(dict(report.to_dict(), box_atoms=inside), indent=1))
    log.info(
        "receptor %s: %d residues, %d atoms; box %s holds %d atoms",
        spec,
        report.n_residues,
        report.n_atoms,
        box,
        inside,
    )
    return 0


def cmd_prepare_ligands(args: argparse.Namespace) -> int:
    from .ligands import LigandSettings, prepare_chunk

    cfg = _config_with_flags(args)
    sdf, table, failures, _ = _chunk_outputs(args.chunk, args.out_dir)
    keep_poses = cfg["docking"]["mode"] == "score_only" if args.keep_poses is None else args.keep_poses
    settings = settings_from_section(LigandSettings, cfg, "ligands", seed=cfg["seed"], keep_poses=keep_poses)
    done, failed = prepare_chunk(args.chunk, sdf, table, failures, settings)
    log.info("prepared %s: %d ok, %d failed", args.chunk, done, failed)
    return 0


def cmd_dock(args: argparse.Namespace) -> int:
    from .box import Box
    from .config import ConfigError
    from .docking import DockingSettings, dock_chunk

    cfg = _config_with_flags(args)
    mode, reference = cfg["docking"]["mode"], cfg["box"]["reference_ligand"]
    if args.tethered_to:
        mode, reference = "tethered", args.tethered_to
    elif args.score_only:
        mode = "score_only"
    sdf, table, failures, _ = _chunk_outputs(args.ligands, args.out_dir)
    rec = Path(args.receptor_dir)
    settings = settings_from_section(DockingSettings, cfg, "docking", seed=cfg["seed"])
    if mode == "tethered":
        from .tethered import TetheredSettings, pose_chunk_tethered

        if not reference:
            raise ConfigError("docking.mode tethered needs a reference ligand: --tethered-to or box.reference_ligand")
        tethered = settings_from_section(TetheredSettings, cfg, "docking", seed=cfg["seed"])
        box = Box.from_json(rec / "box.json")
        done, failed = pose_chunk_tethered(
            args.ligands, rec / "receptor.pdbqt", reference, box, tethered, settings.time_limit, sdf, table, failures
        )
        log.info("posed %s like %s: %d ok, %d failed", args.ligands, reference, done, failed)
        return 0
    if mode == "score_only":
        from .docking import score_chunk

        done, failed = score_chunk(
            args.ligands, rec / "receptor.pdbqt", Box.from_json(rec / "box.json"), settings, sdf, table, failures
        )
        log.info("scored the input poses of %s: %d ok, %d failed", args.ligands, done, failed)
        return 0
    done, failed = dock_chunk(
        args.ligands, rec / "receptor.pdbqt", Box.from_json(rec / "box.json"), settings, sdf, table, failures
    )
    log.info("docked %s: %d ok, %d failed", args.ligands, done, failed)
    return 0


def cmd_active(args: argparse.Namespace) -> int:
    import contextlib

    from .active import ActiveLoop, LookupObjective, LoopSettings, ParquetLibrary, make_surrogate
    from .active.objective import Objective
    from .active.screen import load_state, run_screen, write_outputs

    cfg = _run_config(args.config)
    section = cfg["screen"]["active"]
    out = Path(args.out_dir)
    library = ParquetLibrary(sorted(Path(c) for c in args.chunks))
    objective: Objective
    if args.lookup:
        objective = LookupObjective.from_table(args.lookup, args.lookup_key, args.lookup_score, key="id")
    else:
        from .active.docking_objective import DockingObjective
        from .docking import DockingSettings
        from .ligands import LigandSettings

        objective = DockingObjective(
            args.receptor_dir,
            out / "rounds",
            settings_from_section(LigandSettings, cfg, "ligands", seed=cfg["seed"]),
            settings_from_section(DockingSettings, cfg, "docking", seed=cfg["seed"]),
        )
    settings = settings_from_section(LoopSettings, cfg["screen"], "active")
    state = load_state(out / "state")
    loop = ActiveLoop(library, objective, make_surrogate(section["surrogate"]), settings, cfg["seed"], state)
    with contextlib.ExitStack() as stack:
        if args.dask:
            from .dask_cluster import DaskSettings, dask_client

            loop.client = stack.enter_context(
                dask_client(settings_from_section(DaskSettings, cfg, "dask", strict=True))
            )
        run_screen(loop, out / "state")
        counts = write_outputs(loop, out)
    log.info("active screen %s: %s (stopped: %s)", out, counts, loop.state.stopped)
    return 0


def _run_config(path: str | None) -> dict:
    """The run config (validated, defaults filled); the built-in defaults when no file is given."""
    from .config import fill_defaults, load_config, load_schema

    return load_config(path) if path else fill_defaults({}, load_schema())


def cmd_featurize(args: argparse.Namespace) -> int:
    from .dask_cluster import DaskSettings, dask_client
    from .featurize import FeaturizeSettings, PairGraphs, featurize_docked_chunk, featurize_refined_batch
    from .scoring.pair_folder import pair_schema_for_run

    poses = Path(args.poses)
    stem = poses.name.split(".")[0]
    out = Path(args.out_dir)
    cfg = _run_config(args.config)
    settings = settings_from_section(FeaturizeSettings, cfg, "featurize", strict=True)
    outputs = (
        out / "features" / f"{stem}.parquet",
        out / "graphs" / f"{stem}.pt",
        out / "features" / f"{stem}.failures.csv",
    )
    # the graphs are the ones the run's last stage reads: pair graphs when score.model is a pair model,
    # or, in a training run (train.name set), when train.scorer is pair (the Snakefile decides alike)
    pair_schema = pair_schema_for_run(cfg)
    pdbqt = args.receptor_pdbqt or Path(args.receptor).with_suffix(".pdbqt")  # prepare-receptor writes both
    pair = PairGraphs(str(pdbqt), pair_schema) if pair_schema is not None else None
    with dask_client(settings_from_section(DaskSettings, cfg, "dask", strict=True)) as client:
        if args.refined:
            summary = featurize_refined_batch(
                poses,
                poses.with_suffix(".parquet"),
                poses.parent / "frames",
                args.receptor,
                *outputs,
                settings,
                client,
                pair,
            )
        else:
            summary = featurize_docked_chunk(
                poses, poses.with_suffix(".parquet"), args.receptor, *outputs, settings, client, pair
            )
    if faults.inject("graphs", stem) == "corrupt":  # tests: an unreadable graph file, as a full disk would leave
        outputs[1].write_bytes(b"\x00 not a graph file")
    log.info("featurized %s: %s", args.poses, summary)
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    import pandas as pd

    from .io import write_parquet_atomic
    from .layout import write_manifest
    from .refine.selection import SELECTION_COLUMNS, batch, select_poses

    cfg = _run_config(args.config)["refine"]
    layout = RunLayout(args.run_dir)
    # only the columns the selection reads: a million compounds' pose tables in full would not fit
    frames = [
        pd.read_parquet(layout.docked_table(c), columns=["id", "pose", "docking_score"]).assign(chunk=c)
        for c in layout.chunks()
    ]
    poses = (
        pd.concat([f for f in frames if len(f)], ignore_index=True)
        if any(len(f) for f in frames)
        else pd.DataFrame(
            {
                "id": pd.Series(dtype=str),
                "pose": pd.Series(dtype="int64"),
                "docking_score": pd.Series(dtype=float),
                "chunk": pd.Series(dtype=str),
            }
        )
    )
    select_by = cfg.get("select_by", schema_default("refine", "select_by"))
    # a model rule reads the docked poses' scores (the Snakefile's score_docked rule writes them)
    scores = (
        pd.read_parquet(layout.docked_scores, columns=["id", "pose", "source", "gnn_score", "gnn_spread"])
        if select_by != "docking" and cfg["enabled"]
        else None
    )
    selected = (
        select_poses(
            poses,
            cfg["top_fraction"],
            cfg["top_n"],
            cfg["poses_per_compound"],
            select_by=select_by,
            scores=scores,
            ucb_k=cfg.get("ucb_k", schema_default("refine", "ucb_k")),
        )
        if cfg["enabled"] and len(poses)
        else pd.DataFrame(columns=SELECTION_COLUMNS)
    )
    # each selected pose carries its chunk, so a refine job reads only the docked SDFs it needs
    chunk_of = poses[["id", "chunk"]].drop_duplicates("id")
    selected = selected.merge(chunk_of, on="id", how="left")[[*SELECTION_COLUMNS, "chunk"]]
    selected["select_by"] = select_by
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for index, part in enumerate(batch(selected, cfg["batch_size"]) if len(selected) else []):
        names.append(f"batch_{index:05d}")
        write_parquet_atomic(part, out / f"{names[-1]}.parquet")
    # the manifest, not the folder, says which batches this selection made (a larger earlier one leaves files)
    write_manifest(out, "batches", names)
    log.info(
        "selected %d poses of %d compounds for refinement by %s (%d batches)",
        len(selected),
        selected["id"].nunique(),
        select_by,
        len(names),
    )
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    import pandas as pd

    from .refine.job import count_retries, refine_batch
    from .refine.protocol import RefineSettings
    from .refine.selection import load_poses

    run_cfg = _run_config(args.config)
    # the section's selection keys (enabled, top_n, select_by, ...) are the select stage's, not fields
    settings = settings_from_section(RefineSettings, run_cfg, "refine", seed=run_cfg["seed"])
    layout = RunLayout(args.run_dir)
    stem = Path(args.batch).name.split(".")[0]
    selected = pd.read_parquet(args.batch)
    # only the chunks that hold this batch's poses (every chunk for a batch table without them)
    chunks = sorted(set(selected["chunk"])) if "chunk" in selected.columns else layout.chunks()
    poses, missing = load_poses([layout.docked_sdf(c) for c in chunks], selected)
    done, failed = refine_batch(
        layout.receptor_pdb,
        poses,
        settings,
        layout.refined_sdf(stem),
        layout.refined_table(stem),
        layout.frames_dir,
        layout.refined_failures(stem),
        known_failures=missing,
    )
    retried = count_retries(pd.read_parquet(layout.refined_table(stem), columns=["md_attempts"]))
    log.info(
        "refined %s: %d ok (%d after a retry at %s fs), %d failed",
        args.batch,
        done,
        retried,
        settings.retry_timestep_fs,
        failed + len(missing),
    )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .dask_cluster import DaskSettings, dask_client
    from .graphs import DEFAULT_SCHEMA
    from .io import write_failures
    from .scoring.score import graph_file_ids, score_library, write_pocket_record, write_scores

    cfg = _run_config(args.config)
    score = cfg["score"]
    model = args.model or score["model"]
    run = Path(args.run_dir)
    layout = RunLayout(run)
    # --docked-only: before MD, for refine.select_by; the refined batches do not exist yet
    files = [layout.graph_file(c) for c in layout.chunks()] if args.docked_only else layout.graph_files()
    # an unreadable graph file costs only its compounds: these say which they were (a corrupt file cannot)
    ids = graph_file_ids(layout)
    refined = [] if args.docked_only else [layout.graph_file(b) for b in layout.batches()]
    # a persistent Dask fault raises InfrastructureError: the job fails loudly, nothing is written
    with dask_client(settings_from_section(DaskSettings, cfg, "dask", strict=True)) as client:
        result = score_library(
            files,
            model,
            client,
            ids=ids,
            refined=refined,
            batch_size=score["batch_size"],
            device=score["device"],
            precision=score["precision"],
            expect_schema=DEFAULT_SCHEMA,
            models_dir=score["models_dir"],
        )
    table = result.table
    if args.docked_only:
        # the score stage proper scores these graphs again and records their failures and the domain
        out = Path(args.out) if args.out else layout.docked_scores
        write_scores(table, out)
        log.info(
            "scored %d docked complexes of %d compounds with model %s -> %s (for refine.select_by); %d failed",
            len(table),
            table["id"].nunique(),
            model,
            out,
            len(result.failures),
        )
        return 0
    out = Path(args.out) if args.out else layout.scores
    write_failures(result.rows().to_dict("records"), layout.score_failures)
    write_pocket_record(layout, model, score["models_dir"])  # domain.json: the rank stage's domain check
    write_scores(table, out)
    log.info(
        "scored %d complexes of %d compounds with model %s -> %s; %d compounds failed, %d refined scores lost (%s)",
        len(table),
        table["id"].nunique(),
        model,
        out,
        len(result.failures),
        len(result.warnings),
        layout.score_failures,
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .scoring.train import TrainSettings, train_from_files

    cfg = _run_config(args.config)
    section = dict(cfg["train"])
    configured = section.pop("name")
    name = args.name or configured
    models_dir = Path(section.pop("models_dir"))
    section["model"] = section.pop("architecture")
    scorer = section.pop("scorer", "complex")
    pair_keys = {key: section.pop(key, None) for key in ("init_from", "pair")}
    if not name:
        from .config import ConfigError

        raise ConfigError("training needs a model name: set 'train.name' (e.g. --config train='{name: mymodel}')")
    run = Path(args.run_dir)
    assay = args.assay or cfg["library"]["path"]
    if scorer == "pair":  # the pair-term scorer, from scratch or fine-tuning train.init_from
        from .scoring.domain import run_pocket
        from .scoring.pair_finetune import train_pair_from_files

        receptor = cfg["receptor"]  # the pocket's name in the card: the dockstring target or the file's stem
        pocket = receptor.get("dockstring") or Path(receptor.get("path") or "receptor").name.split(".")[0]
        summary = train_pair_from_files(
            RunLayout(run).graph_files(),
            assay,
            models_dir / name,
            dict(cfg["train"], name=name),
            failures_csv=run / "train_failures.csv",
            pockets=run_pocket(RunLayout(run), pocket),  # the card records its training pocket (domain check)
        )
    else:
        if pair_keys["init_from"]:
            from .config import ConfigError

            raise ConfigError("train.init_from fine-tunes a pair model: it needs train.scorer: pair")
        summary = train_from_files(
            RunLayout(run).graph_files(),
            assay,
            models_dir / name,
            settings_from_mapping(TrainSettings, section, "train", strict=True),
            failures_csv=run / "train_failures.csv",
        )
    log.info(
        "trained %s: %d compounds (%d graphs), %d assay rows left out (see %s), %.0f s; held-out metrics: %s",
        summary.model_dir,
        summary.compounds,
        summary.graphs,
        summary.failed,
        run / "train_failures.csv",
        summary.seconds,
        json.dumps(summary.metrics, default=str)[:400],
    )
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    from .pose_validity import PoseCheckSettings
    from .ranking import rank_run
    from .scoring.domain import DomainSettings, read_pocket_record

    layout = RunLayout(args.run_dir)
    config = _run_config(args.config)
    score = config["score"]
    scores = None
    if score["enabled"] and layout.scores.exists():
        scores = layout.scores
    elif score["enabled"]:
        log.warning("no %s: ranking by docking score (run 'vscreen score' first for GNN scores)", layout.scores)
        score = dict(score, enabled=False)
    result = rank_run(
        layout,
        scores,
        layout.score_failures if scores is not None else None,
        rank_by=score["rank_by"] if score["enabled"] else "docking",
        consensus_weight=score["consensus_weight"],
        domain=settings_from_mapping(DomainSettings, score, "score"),
        pocket=read_pocket_record(layout.domain) if scores is not None else None,
        pose_checks=PoseCheckSettings.from_config(config["report"]),
        md_rerank=config["score"]["md_rerank"],
    )
    log.info(
        "ranked %d compounds, %d failures, %d pose warnings -> %s",
        result.n_ranked,
        result.failures.num_rows,
        result.warnings.num_rows,
        layout.ranking,
    )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .scoring.explain import explain_run, write_explanations

    layout = RunLayout(args.run_dir)
    config = args.config or (layout.config if layout.config.is_file() else None)
    result = explain_run(layout, _run_config(str(config) if config else None), args.top_n)
    out = write_explanations(result, args.out or layout.explain_dir)
    failed = result.summary["status"] == "failed"
    log.info(
        "explained %d poses of %d top hits (%d could not be explained) -> %s",
        int((~failed).sum()),
        result.summary["id"].nunique(),
        int(failed.sum()),
        out,
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    run = Path(args.run_dir)
    config = args.config or (run / "config.yaml" if (run / "config.yaml").is_file() else None)
    summary = build_report(
        run, _run_config(str(config) if config else None), args.out, args.top_hits, args.figures_dir, args.top_n
    )
    log.info(
        "wrote %s (%d top hits, %d figures) and %s (%d poses)",
        summary.html,
        summary.top_rows,
        len(summary.figures),
        summary.top_hits,
        summary.top_hits_written,
    )
    from .report.index import write_index

    try:  # the runs' index is a convenience: a folder it cannot write must not fail the report
        log.info("runs index: %s", write_index(run.resolve().parent))
    except OSError as exc:
        log.warning("could not write the runs index next to %s: %s", run, exc)
    return 0


def _override(
    p: argparse.ArgumentParser, flag: str, path: str, help: str = "", group: Any = None, **kwargs: Any
) -> None:
    """Add ``flag`` to subcommand ``p``: it overrides the run config's ``path`` (``docking.exhaustiveness``,
    ``seed``) and defaults to ``None``, the config's value; ``--help`` shows the built-in default,
    read from ``schema.yaml``."""
    section, _, key = path.rpartition(".")
    built_in = schema_default(section, key) if section else schema_default(key)
    text = f"{help} (default: the config's {path}; built-in {'none' if built_in is None else built_in})"
    (group or p).add_argument(flag, default=None, help=text.strip().replace("%", "%%"), **kwargs)
    p.get_default("overrides").append((flag.lstrip("-").replace("-", "_"), path))


def _add_config_arg(p: argparse.ArgumentParser, sections: str) -> None:
    p.add_argument(
        "--config",
        help=f"run config ({sections}); the flags below override it (default: the built-in defaults)",
    )


def _add_box_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("docking box (one of; default: the config's box section)")
    g.add_argument("--center", type=float, nargs=3, metavar=("X", "Y", "Z"), help="box center, Å")
    g.add_argument("--size", type=float, nargs=3, metavar=("SX", "SY", "SZ"), help="box edge lengths, Å")
    g.add_argument("--reference-ligand", help="ligand file (.sdf/.mol2/.pdb); the box encloses it plus --padding")
    _override(p, "--padding", "box.padding", "Å around the reference ligand", group=g, type=float)
    g.add_argument("--vina-config", help="file with center_x/size_x lines")


def _time_limit_flag(text: str) -> float | str:
    """``--time-limit``: seconds, or :data:`NO_LIMIT` for ``none`` (argparse ``type=``)."""
    from .isolation import parse_time_limit  # light (no engine imported)

    value = parse_time_limit(text)
    return NO_LIMIT if value is None else value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vscreen`` with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="vscreen", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=f"{help}\n\nexample:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func, overrides=[])
        return p

    p = add(
        "check-config",
        cmd_check_config,
        "validate a run config and its inputs (library not empty, receptor file, box on the protein, model), "
        "and print it with defaults filled in",
        "vscreen check-config config/config.yaml --show",
    )
    p.add_argument("config")
    p.add_argument("--show", action="store_true", help="print the full config")
    p.add_argument(
        "--no-files", action="store_true", help="check the config only, not its files (library, receptor, box, model)"
    )

    p = add(
        "split",
        cmd_split,
        "read a library (.smi/.csv/.sdf[.gz]), sanitize ids, write Parquet chunks",
        "vscreen split library.smi --out-dir results/mine/chunks --failures results/mine/failures/input.csv",
    )
    p.add_argument("library")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--failures", required=True, help="CSV for rejected rows")
    _add_config_arg(p, "library, docking.mode")
    _override(p, "--chunk-size", "library.chunk_size", type=int)
    _override(p, "--format", "library.format", choices=["auto", "smi", "csv", "sdf"])
    _override(p, "--id-column", "library.id_column")
    _override(p, "--smiles-column", "library.smiles_column")
    _override(p, "--id-property", "library.id_property")
    p.add_argument(
        "--keep-poses",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep each SD record's mol block (its 3D pose) in the chunks, and reject records without 3D "
        "coordinates (default: when the config's docking.mode is score_only)",
    )

    p = add(
        "active",
        cmd_active,
        "screen a library too large to dock: dock a random fraction, then rounds chosen by a surrogate "
        "(config screen.active); resumes a killed screen from its last round",
        "vscreen active results/mine/chunks/*.parquet --config mine.yaml --receptor-dir results/mine/receptor "
        "--out-dir results/mine/active",
    )
    p.add_argument("chunks", nargs="+", help="library chunks (Parquet with id, smiles; vscreen split writes them)")
    p.add_argument("--config", help="run config (screen.active, ligands, docking, dask, seed); default: built-in")
    p.add_argument("--out-dir", required=True, help="state/, rounds/ and docked/predicted/failures/rounds.csv")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--receptor-dir", help="a prepared receptor (vscreen prepare-receptor): dock each batch")
    target.add_argument("--lookup", help="a score table instead of docking (CSV or Parquet; benchmarks, tests)")
    p.add_argument("--lookup-key", default="id", help="--lookup: the column with compound ids")
    p.add_argument("--lookup-score", default="score", help="--lookup: the score column (lower = better)")
    p.add_argument("--dask", action="store_true", help="predict each round on the config's Dask cluster")

    p = add(
        "prepare-receptor",
        cmd_prepare_receptor,
        "repair and protonate a receptor (PDBFixer), write receptor.pdb, receptor.pdbqt and box.json",
        "vscreen prepare-receptor --receptor 1iep_receptorH.pdb --vina-config 1iep_box.txt --out-dir results/mine/receptor",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--receptor", help=".pdb or .pdbqt file (default: the config's receptor.path)")
    src.add_argument("--dockstring", help="name of a dockstring target, e.g. ACHE (default: receptor.dockstring)")
    p.add_argument("--out-dir", required=True)
    _add_config_arg(p, "receptor, box")
    _override(p, "--ph", "receptor.ph", type=float)
    _override(p, "--keep-waters", "receptor.keep_waters", action=argparse.BooleanOptionalAction)
    _override(p, "--keep-heterogens", "receptor.keep_heterogens", nargs="*", metavar="RESNAME")
    _add_box_args(p)

    p = add(
        "prepare-ligands",
        cmd_prepare_ligands,
        "standardize, protonate, embed in 3D and type for Vina one chunk of compounds",
        "vscreen prepare-ligands results/mine/chunks/chunk_00000.parquet --out-dir results/mine/ligands",
    )
    p.add_argument("chunk", help="chunk Parquet written by 'vscreen split'")
    p.add_argument("--out-dir", required=True)
    _add_config_arg(p, "ligands, seed, docking.mode")
    _override(p, "--ph", "ligands.ph", type=float)
    _override(p, "--seed", "seed", type=int)
    _override(
        p,
        "--protonation",
        "ligands.protonation",
        "tool for the dominant protonation state at --ph",
        choices=("molscrub", "dimorphite"),  # pipeline.ligands.PROTONATION_TOOLS, not imported here (light CLI)
    )
    _override(p, "--max-heavy-atoms", "ligands.max_heavy_atoms", type=int)
    _override(p, "--min-heavy-atoms", "ligands.min_heavy_atoms", type=int)
    _override(p, "--embed-attempts", "ligands.embed_attempts", type=int)
    _override(
        p,
        "--time-limit",
        "ligands.time_limit",
        "wall-clock limit per compound, in an isolated worker process ('none' = no limit)",
        type=_time_limit_flag,
        metavar="SECONDS",
    )
    p.add_argument(
        "--keep-poses",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="prepare each compound from its input pose (the chunk's molblock column, 'vscreen split "
        "--keep-poses'): no protonation or embedding, missing hydrogens added at the pose "
        "(default: when the config's docking.mode is score_only)",
    )

    p = add(
        "dock",
        cmd_dock,
        "dock one prepared chunk with AutoDock Vina (maps computed once per chunk)",
        "vscreen dock results/mine/ligands/chunk_00000.parquet --receptor-dir results/mine/receptor --out-dir results/mine/docked",
    )
    p.add_argument("ligands", help="ligand table Parquet written by 'vscreen prepare-ligands'")
    p.add_argument("--receptor-dir", required=True, help="folder with receptor.pdbqt and box.json")
    p.add_argument("--out-dir", required=True)
    _add_config_arg(p, "docking, seed, box.reference_ligand for docking.mode tethered")
    _override(p, "--exhaustiveness", "docking.exhaustiveness", type=int)
    _override(p, "--n-poses", "docking.n_poses", type=int)
    _override(p, "--energy-range", "docking.energy_range", type=float)
    _override(p, "--seed", "seed", type=int)
    _override(p, "--threads", "docking.threads", type=int)
    _override(p, "--scoring", "docking.scoring", choices=["vina", "vinardo"])
    _override(
        p,
        "--time-limit",
        "docking.time_limit",
        "wall-clock limit per ligand (Vina + pose export), in an isolated worker process ('none' = no limit)",
        type=_time_limit_flag,
        metavar="SECONDS",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--tethered-to",
        metavar="REFERENCE",
        help="pose like this reference ligand (.sdf/.mol in the receptor's frame) instead of docking: "
        "docking.mode tethered (default: the config's docking.mode, with box.reference_ligand)",
    )
    mode.add_argument(
        "--score-only",
        action="store_true",
        help="score each ligand in its input pose (prepared with 'vscreen prepare-ligands --keep-poses'), "
        "no search: docking.mode score_only",
    )

    p = add(
        "featurize",
        cmd_featurize,
        "interaction fingerprints (ProLIF) and complex graphs (PyG; pair graphs when score.model is a pair model) "
        "of one docked chunk, as Dask tasks",
        "vscreen featurize results/mine/docked/chunk_00000.sdf --receptor results/mine/receptor/receptor.pdb "
        "--out-dir results/mine --config mine.yaml",
    )
    p.add_argument("poses", help="docked chunk SDF or refined batch SDF (its .parquet table beside it)")
    p.add_argument(
        "--refined",
        action="store_true",
        help="the SDF is a refined batch: read MD frames from frames/ beside it, report persistence",
    )
    p.add_argument("--receptor", required=True, help="MD-ready receptor PDB (with hydrogens)")
    p.add_argument(
        "--receptor-pdbqt",
        help="docking receptor PDBQT, read when score.model is a pair model (pair graphs); "
        "default: the .pdbqt beside --receptor",
    )
    p.add_argument("--out-dir", required=True, help="run folder: writes features/<chunk>.parquet and graphs/<chunk>.pt")
    p.add_argument(
        "--config",
        help="run config for the featurize and dask sections, and score.model: a pair model gets pair graphs, "
        "as does a training run (train.name) with train.scorer: pair (default: built-in defaults)",
    )

    p = add(
        "select",
        cmd_select,
        "choose the docked poses to refine by MD and split them into batches",
        "vscreen select --run-dir results/mine --out-dir results/mine/refine_batches --config mine.yaml",
    )
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--config", help="run config (refine section); default: built-in defaults")

    p = add(
        "refine",
        cmd_refine,
        "refine one batch of docked poses with OpenMM (minimize + Langevin MD)",
        "vscreen refine results/mine/refine_batches/batch_00000.parquet --run-dir results/mine --config mine.yaml",
    )
    p.add_argument("batch", help="batch Parquet written by 'vscreen select'")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--config", help="run config (refine section, seed); default: built-in defaults")

    p = add(
        "score",
        cmd_score,
        "score every complex graph of a run with a GNN ensemble, as Dask tasks (model loaded once per worker)",
        "vscreen score --run-dir results/mine --config results/mine/config.yaml",
    )
    p.add_argument("--run-dir", required=True, help="run folder with graphs/*.pt; writes scores.parquet")
    p.add_argument("--config", help="run config (score and dask sections); default: built-in defaults")
    p.add_argument("--model", help="model name or folder (default: score.model from the config)")
    p.add_argument("--out", help="output Parquet (default: <run-dir>/scores.parquet)")
    p.add_argument(
        "--docked-only",
        action="store_true",
        help="score the docked chunks' graphs alone, before MD, for refine.select_by score or ucb "
        "(default --out: <run-dir>/scores_docked.parquet; no failures or domain file written)",
    )

    p = add(
        "train",
        cmd_train,
        "train a scorer ensemble (train.scorer: the complex-graph GNN, or the pair-term model, from scratch or "
        "fine-tuning train.init_from) on a run's complexes and an assay table; writes models/<name>/",
        "vscreen train --run-dir results/myassay --config results/myassay/config.yaml --name myassay",
    )
    p.add_argument("--run-dir", required=True, help="run folder whose graphs/*.pt are the assay compounds' complexes")
    p.add_argument("--config", help="run config (train section; library.path is the assay by default)")
    p.add_argument("--name", help="model name (default: train.name from the config)")
    p.add_argument("--assay", help="assay table: id, smiles and value or active (default: the run's library)")

    p = add(
        "rank",
        cmd_rank,
        "collate a run into ranking.csv and failures.csv",
        "vscreen rank --run-dir results/mine --config results/mine/config.yaml",
    )
    p.add_argument("--run-dir", required=True)
    p.add_argument("--config", help="run config (score section: GNN scores and rank_by); default: built-in defaults")

    p = add(
        "explain",
        cmd_explain,
        "why each top hit's score: per-residue and per-contact shares of the pair-term model's score and of "
        "Vina's, and Vina's per-term breakdown (explain/summary.csv, explain/contacts.csv, "
        "explain/compounds/<id>.csv); a compound that cannot be explained is a row saying why",
        "vscreen explain --run-dir results/mine --config results/mine/config.yaml",
    )
    p.add_argument("--run-dir", required=True, help="run folder with ranking.csv (after 'vscreen rank')")
    p.add_argument("--config", help="run config (score: the model; default: <run-dir>/config.yaml)")
    p.add_argument("--top-n", type=int, help="compounds explained (default: report.top_n, the report's top hits)")
    p.add_argument("--out", help="output folder, replaced whole (default: <run-dir>/explain)")

    p = add(
        "report",
        cmd_report,
        "write report.html (self-contained: settings, funnel, top hits, figures, enrichment), its figures "
        "and top_hits.sdf for a ranked run",
        "vscreen report --run-dir results/mine --config results/mine/config.yaml --top-n 50",
    )
    p.add_argument("--run-dir", required=True, help="run folder with ranking.csv (after 'vscreen rank')")
    p.add_argument("--config", help="run config (default: <run-dir>/config.yaml)")
    p.add_argument("--top-n", type=int, help="compounds in the top-hits table and SDF (default: report.top_n)")
    p.add_argument("--out", help="report page (default: <run-dir>/report.html)")
    p.add_argument("--top-hits", help="SD file of the top hits' poses (default: <run-dir>/top_hits.sdf)")
    p.add_argument("--figures-dir", help="folder for the figures as PNG files (default: <run-dir>/figures)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vscreen`` console script; returns the exit code.

    Known user errors (bad config, missing file, bad box) print one line and exit 2.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("distributed", "MDAnalysis"):  # cluster start/stop chatter drowns the stage's own lines
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    from .errors import user_errors

    try:
        return args.func(args)
    except Exception as exc:
        if not isinstance(exc, user_errors()):
            raise
        print(f"vscreen {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
