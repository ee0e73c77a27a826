"""An active screen that survives being killed: every round's proposal and result are on disk.

:func:`run_screen` drives an :class:`~.loop.ActiveLoop` round by round and keeps, in
``state_dir``:

* ``round_<r>.proposal.parquet`` - the batch round ``r`` chose (``id, smiles,
  predicted_score, predicted_sd``), written before the batch is evaluated;
* ``state.json`` - the loop's whole state (:meth:`~.loop.LoopState.to_dict`), rewritten after
  each round is recorded.

Both are written atomically. A screen killed at any point (SIGKILL included) and started
again with the same command reads ``state.json`` (the rounds recorded), re-reads the
proposal of the round that was under way, evaluates it again (the docking objective reuses
the stages that had completed) and goes on: it docks the same compounds as a screen that
was never interrupted. :func:`write_outputs` then writes what a chemist opens:
``docked.csv``, ``predicted.csv`` (the undocked compounds with the surrogate's prediction),
``failures.csv``, ``rounds.csv`` and ``rounds.png`` (best scores against the fraction docked, and
the surrogate's accuracy on each batch it chose); every library compound is in exactly one of
the first three.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import faults
from ..io import atomic_path, write_parquet_atomic, write_text_atomic
from ..report.figures import active_rounds_figure, png_bytes
from .loop import ActiveLoop, LoopState, Proposal

__all__ = ["load_state", "run_screen", "write_outputs"]

log = logging.getLogger(__name__)

STATE = "state.json"


def _proposal_path(state_dir: Path, round_index: int) -> Path:
    return state_dir / f"round_{round_index:03d}.proposal.parquet"


def load_state(state_dir: str | Path) -> LoopState | None:
    """The state a previous (possibly killed) run of this screen recorded, or None."""
    path = Path(state_dir) / STATE
    return LoopState.from_dict(json.loads(path.read_text())) if path.exists() else None


def _save_proposal(path: Path, proposal: Proposal) -> None:
    write_parquet_atomic(proposal.frame(), path)
    write_text_atomic(path.with_suffix(".json"), json.dumps(dict(fit=proposal.fit), default=str))


def _load_proposal(path: Path, round_index: int) -> Proposal:
    frame = pd.read_parquet(path)
    meta = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() else {}
    return Proposal(
        round=round_index,
        ids=[str(i) for i in frame["id"]],
        smiles=[str(s) for s in frame["smiles"]],
        mean=frame["predicted_score"].to_numpy(np.float64),
        sd=frame["predicted_sd"].to_numpy(np.float64),
        fit=meta.get("fit", {}),
        cpu_start=time.process_time(),
    )


def run_screen(loop: ActiveLoop, state_dir: str | Path) -> LoopState:
    """Run ``loop`` to its end, persisting each round in ``state_dir`` (module docstring).

    Build ``loop`` with ``state=load_state(state_dir)`` to resume. An objective with a
    ``round`` attribute (:class:`~.docking_objective.DockingObjective`) is told the round
    before each batch, so its files are per round.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    while not loop.done:
        r = loop.next_round
        path = _proposal_path(state_dir, r)
        if path.exists():
            proposal = _load_proposal(path, r)
            log.info("round %d: resuming its saved batch of %d compounds", r, len(proposal.ids))
        else:
            proposal = loop.propose()
            _save_proposal(path, proposal)
        if hasattr(loop.objective, "round"):
            loop.objective.round = r
        faults.inject("active-round", f"round_{r}")  # tests: SIGKILL with the batch saved, not yet docked
        t0 = time.perf_counter()
        evaluation = loop.evaluate(proposal)
        record = loop.record(proposal, evaluation, time.perf_counter() - t0)
        write_text_atomic(state_dir / STATE, json.dumps(loop.state.to_dict(), default=float))
        log.info(
            "round %d: %d scored, %d failed; %d of %d spent (%.1f%%), best %.2f, top-k mean %.2f",
            r,
            record.scored,
            record.failed,
            record.spent_total,
            loop.n_budget,
            100 * record.fraction_spent,
            record.best_score,
            record.top_k_mean,
        )
    log.info("screen stopped: %s", loop.state.stopped)
    return loop.state


def write_outputs(loop: ActiveLoop, out_dir: str | Path) -> dict[str, Any]:
    """``docked.csv``, ``predicted.csv``, ``failures.csv``, ``rounds.csv`` and ``rounds.png`` of a finished screen.

    Returns
    -------
    dict
        Row counts of each file and the library size (docked + predicted + failed == library).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docked = loop.docked_frame().sort_values(["score", "id"], kind="stable")
    predicted_parts = list(loop.predicted())  # fills state.failures with compounds it cannot featurize
    predicted = (
        pd.concat(predicted_parts, ignore_index=True)
        if predicted_parts
        else pd.DataFrame(columns=["id", "smiles", "predicted_score", "predicted_sd"])
    ).sort_values(["predicted_score", "id"], kind="stable")
    failures = loop.failures_frame()
    rounds = pd.DataFrame([{k: v for k, v in asdict(r).items() if k != "fit"} for r in loop.state.rounds])
    for name, frame in (("docked", docked), ("predicted", predicted), ("failures", failures), ("rounds", rounds)):
        with atomic_path(out / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
    figure = active_rounds_figure(rounds) if len(rounds) else None
    if figure is not None:
        with atomic_path(out / "rounds.png") as tmp:
            tmp.write_bytes(png_bytes(figure))
    counts = dict(docked=len(docked), predicted=len(predicted), failed=len(failures), library=loop.state.library_size)
    if counts["docked"] + counts["predicted"] + counts["failed"] != counts["library"]:
        raise RuntimeError(f"active screen lost compounds: {counts}")
    return counts
