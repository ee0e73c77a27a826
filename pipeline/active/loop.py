"""The active-learning screen: dock a random sample, learn, dock what the model likes, repeat.

Round 0 docks a seeded random sample of the library. Every later round

1. fits the surrogate from scratch on everything docked so far (:meth:`Surrogate.fit`),
2. streams the rest of the library through it chunk by chunk (:func:`~.chunks.predict_chunks`),
   keeping only the best ``batch`` compounds by acquisition utility (:class:`~.acquisition.TopSelector`),
3. evaluates that batch with the objective (docking, or a lookup table) and records scores and failures,

until the budget is spent, ``max_rounds`` acquisition rounds have run, the stopping rule fires
(the mean of the best ``top_k`` docked scores stopped improving), or nothing is left to dock.

Everything the loop knows is in :class:`LoopState` (plain data, :meth:`LoopState.to_dict`),
and a round is split into :meth:`ActiveLoop.propose` and :meth:`ActiveLoop.record`, so a
workflow can persist the state and the proposed batch between the two (one checkpoint per
round) and dock the batch elsewhere. For a fixed seed the loop is deterministic: the random
sample and Thompson's draws are keyed hashes of the compound ids (independent of chunking),
the surrogate's seed is derived from (seed, round), and ties are broken by id.

Sizes (``initial``, ``batch``, ``budget``) are a fraction of the library when given as a float
(``0.01`` = 1 %) and a count when given as an int. Objective failures count against the
budget (they cost a docking); compounds the surrogate cannot featurize are failures too
(stage :data:`SURROGATE_STAGE`), are never proposed, and cost nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..config import schema_field
from .acquisition import TopSelector, acquisition_function, uniform_keys
from .chunks import CompoundLibrary, ParquetLibrary, predict_chunks
from .distributed import predict_top_distributed, select_top
from .objective import Evaluation, Objective
from .surrogate import Surrogate

__all__ = [
    "OBJECTIVE_STAGE",
    "SURROGATE_STAGE",
    "ActiveLoop",
    "LoopSettings",
    "LoopState",
    "Proposal",
    "RoundRecord",
    "StoppingRule",
]

#: ``stage`` of a failure row: the objective (docking) failed, or the surrogate had no features.
OBJECTIVE_STAGE = "objective"
SURROGATE_STAGE = "surrogate"
NO_FEATURES = "the surrogate cannot featurize this SMILES"


def size_of(value: float | int, total: int, what: str) -> int:
    """A float is a fraction of ``total`` (rounded, at least 1), an int is a count; ``what`` names it in errors."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a fraction (float) or a count (int), got {value!r}")
    if isinstance(value, float):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{what} as a fraction must be in (0, 1], got {value}")
        return max(1, int(round(value * total)))
    if value < 0:
        raise ValueError(f"{what} as a count must be >= 0, got {value}")
    return int(value)


@dataclass(frozen=True)
class StoppingRule:
    """Stop when the mean of the best ``top_k`` docked scores has not improved for ``patience`` rounds.

    "Improved" means lower by more than ``tolerance`` times its magnitude (relative; 0 = any
    decrease counts). The rule only looks at rounds after which at least ``top_k`` compounds
    were docked (before that the mean of "the best k" is the mean of everything, which can rise).
    ``patience=None`` disables it.
    """

    top_k: int = 100
    patience: int | None = None
    tolerance: float = 0.0

    def should_stop(self, top_k_means: list[float]) -> bool:
        """``top_k_means``: the rule's statistic after each round (NaN while fewer than ``top_k`` docked)."""
        if self.patience is None:
            return False
        history = [v for v in top_k_means if math.isfinite(v)]
        if len(history) <= self.patience:
            return False
        before, now = history[-1 - self.patience], history[-1]
        return before - now <= self.tolerance * abs(before)


@dataclass(frozen=True)
class LoopSettings:
    """Sizes, acquisition and stopping of an active screen.

    Parameters
    ----------
    initial, batch, budget
        Random initial sample, compounds per acquisition round, and the most compounds ever
        sent to the objective: fractions of the library (float) or counts (int).
    max_rounds
        Most acquisition rounds after the initial sample (None: until the budget or the rule stops it).
        Defaults: the run config's (``screen.active`` in ``schema.yaml``).
    acquisition, beta
        ``greedy``, ``ucb`` (with ``beta``) or ``thompson`` (:mod:`.acquisition`).
    stopping
        The convergence rule (disabled by default).
    """

    initial: float | int = schema_field("screen.active", "initial")
    batch: float | int = schema_field("screen.active", "batch")
    budget: float | int = schema_field("screen.active", "budget")
    max_rounds: int | None = schema_field("screen.active", "max_rounds")
    acquisition: str = schema_field("screen.active", "acquisition")
    beta: float = schema_field("screen.active", "beta")
    stopping: StoppingRule = field(default_factory=StoppingRule)

    def __post_init__(self) -> None:
        acquisition_function(self.acquisition, self.beta)  # validates the name
        if self.max_rounds is not None and self.max_rounds < 0:
            raise ValueError(f"max_rounds must be >= 0, got {self.max_rounds}")


@dataclass
class RoundRecord:
    """What happened in one round: sizes, best scores so far, timings, and the surrogate's accuracy on the batch."""

    round: int
    acquired: int
    scored: int
    failed: int
    spent_total: int
    docked_total: int
    fraction_spent: float
    best_score: float
    top_k_mean: float
    fit_s: float = 0.0
    predict_s: float = 0.0
    evaluate_s: float = 0.0
    cpu_s: float = 0.0
    fit: dict[str, Any] = field(default_factory=dict)
    batch_mae: float = float("nan")
    batch_pearson: float = float("nan")
    batch_spearman: float = float("nan")
    batch_mean_predicted: float = float("nan")
    batch_mean_scored: float = float("nan")


@dataclass
class LoopState:
    """Everything the loop has learned; plain data, so a workflow can store it between rounds."""

    seed: int
    library_size: int
    scores: dict[str, float] = field(default_factory=dict)
    smiles: dict[str, str] = field(default_factory=dict)
    docked_round: dict[str, int] = field(default_factory=dict)
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    rounds: list[RoundRecord] = field(default_factory=list)
    stopped: str | None = None

    @property
    def spent(self) -> int:
        """Compounds sent to the objective so far (scored or failed there)."""
        return len(self.scores) + sum(stage == OBJECTIVE_STAGE for stage, _ in self.failures.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (failures as ``[stage, reason]`` pairs)."""
        out = asdict(self)
        out["failures"] = {k: list(v) for k, v in self.failures.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopState:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["failures"] = {k: (v[0], v[1]) for k, v in data.get("failures", {}).items()}
        data["rounds"] = [RoundRecord(**r) for r in data.get("rounds", [])]
        return cls(**data)


@dataclass
class Proposal:
    """The batch a round wants evaluated, with the surrogate's prediction for it (NaN in round 0)."""

    round: int
    ids: list[str]
    smiles: list[str]
    mean: np.ndarray
    sd: np.ndarray
    fit: dict[str, Any] = field(default_factory=dict)
    fit_s: float = 0.0
    predict_s: float = 0.0
    cpu_start: float = 0.0

    def frame(self) -> pd.DataFrame:
        """``id, smiles, predicted_score, predicted_sd`` (the file a docking job would read)."""
        return pd.DataFrame(
            {"id": self.ids, "smiles": self.smiles, "predicted_score": self.mean, "predicted_sd": self.sd}
        )


FINAL_FIT = 2**31 - 1  # "round" of the fit behind the final predictions (any index no real round reaches)


def _round_seed(seed: int, round_index: int) -> int:
    return int(np.random.SeedSequence([seed, round_index]).generate_state(1)[0])


def _top_k_mean(scores: dict[str, float], k: int) -> float:
    if len(scores) < k or k < 1:
        return float("nan")
    return float(np.sort(np.fromiter(scores.values(), dtype=np.float64))[:k].mean())


def _batch_accuracy(proposal: Proposal, evaluation: Evaluation) -> dict[str, float]:
    from ..scoring.metrics import pearson, spearman

    pairs = [
        (m, evaluation.scores[i])
        for i, m in zip(proposal.ids, proposal.mean)
        if i in evaluation.scores and np.isfinite(m)
    ]
    if not pairs:
        return {}
    pred, obs = np.array(pairs).T
    out = {
        "batch_mae": float(np.abs(pred - obs).mean()),
        "batch_mean_predicted": float(pred.mean()),
        "batch_mean_scored": float(obs.mean()),
    }
    if len(pairs) >= 3:
        out.update(batch_pearson=pearson(pred, obs), batch_spearman=spearman(pred, obs))
    return out


class ActiveLoop:
    """An active-learning screen over a streamed library.

    Parameters
    ----------
    library
        The compounds (:class:`~.chunks.CompoundLibrary`: a size and passes of chunks).
    objective
        ``objective(ids, smiles) -> Evaluation`` (docking, or :class:`~.objective.LookupObjective`).
    surrogate
        The model retrained each round (:class:`~.surrogate.Surrogate`).
    settings
        Sizes, acquisition, stopping (:class:`LoopSettings`).
    seed
        Seeds the random sample, Thompson's draws and every fit.
    state
        A state to resume from (:meth:`LoopState.from_dict`); a new one if None.
    client
        A Dask ``distributed.Client``: with a :class:`~.chunks.ParquetLibrary`, each round's
        predictions run one task per library file on its workers
        (:func:`~.distributed.predict_top_distributed`; the same proposals as serially).
        None: predict in this process.

    Examples
    --------
    >>> loop = ActiveLoop(library, LookupObjective.from_table(table), make_surrogate("mlp"), LoopSettings(), seed=0)
    >>> state = loop.run()  # doctest: +SKIP
    """

    def __init__(
        self,
        library: CompoundLibrary,
        objective: Objective,
        surrogate: Surrogate,
        settings: LoopSettings | None = None,
        seed: int = 0,
        state: LoopState | None = None,
        client: Any = None,
    ) -> None:
        self.library, self.objective, self.surrogate = library, objective, surrogate
        self.client = client
        self.settings = settings or LoopSettings()
        n = len(library)
        self.state = state or LoopState(seed=seed, library_size=n)
        if self.state.library_size != n:
            raise ValueError(f"the state is for a library of {self.state.library_size} compounds, this one has {n}")
        self.n_initial = size_of(self.settings.initial, n, "initial")
        self.n_batch = size_of(self.settings.batch, n, "batch")
        self.n_budget = min(n, size_of(self.settings.budget, n, "budget"))
        self._acquire = acquisition_function(self.settings.acquisition, self.settings.beta)

    # ------------------------------------------------------------------ where the loop stands
    @property
    def next_round(self) -> int:
        return len(self.state.rounds)

    def _stop_reason(self) -> str | None:
        state, r = self.state, self.next_round
        if state.stopped:
            return state.stopped
        if self.n_budget - state.spent <= 0:
            return "budget"
        if r > 0 and self.settings.max_rounds is not None and r > self.settings.max_rounds:
            return "max_rounds"
        if self.settings.stopping.should_stop([rec.top_k_mean for rec in state.rounds]):
            return "converged"
        return None

    @property
    def done(self) -> bool:
        """True once a stop reason holds (recorded in ``state.stopped``)."""
        reason = self._stop_reason()
        if reason and not self.state.stopped:
            self.state.stopped = reason
        return reason is not None

    def _excluded(self) -> set[str]:
        return set(self.state.scores) | set(self.state.failures)

    # ------------------------------------------------------------------ one round
    def propose(self) -> Proposal:
        """Choose the next batch (round 0: random; later: fit, stream-predict, acquire). Does not evaluate it."""
        if self.done:
            raise RuntimeError(f"the screen has stopped ({self.state.stopped})")
        state, r = self.state, self.next_round
        cpu0, t0 = time.process_time(), time.perf_counter()
        size = min(self.n_initial if r == 0 else self.n_batch, self.n_budget - state.spent)
        top = TopSelector(size)
        excluded = self._excluded()
        fit_info: dict[str, Any] = {}
        fit_s = 0.0
        if r == 0:
            for chunk in self.library.chunks():
                keep = [k for k, i in enumerate(chunk.ids) if i not in excluded]
                ids = [chunk.ids[k] for k in keep]
                nan = np.full(len(ids), np.nan)
                top.add(ids, uniform_keys(ids, state.seed, 0), smiles=[chunk.smiles[k] for k in keep], mean=nan, sd=nan)
        else:
            ids = list(state.scores)
            fit_info = self.surrogate.fit(
                [state.smiles[i] for i in ids], np.array([state.scores[i] for i in ids]), _round_seed(state.seed, r)
            )
            fit_s = time.perf_counter() - t0
            args = (excluded, size, self._acquire, state.seed, r)
            if self.client is not None and isinstance(self.library, ParquetLibrary):
                found = predict_top_distributed(self.client, self.surrogate, self.library.paths, *args)
            else:
                found = select_top(self.surrogate, self.library.chunks(), *args)
            top = found.top
            for cid in found.no_features:
                state.failures[cid] = (SURROGATE_STAGE, NO_FEATURES)
        predict_s = time.perf_counter() - t0 - fit_s
        return Proposal(
            round=r,
            ids=top.ids,
            smiles=[str(s) for s in top.column("smiles")] if top.ids else [],
            mean=top.column("mean").astype(np.float64) if top.ids else np.empty(0),
            sd=top.column("sd").astype(np.float64) if top.ids else np.empty(0),
            fit=fit_info,
            fit_s=fit_s,
            predict_s=predict_s,
            cpu_start=cpu0,
        )

    def evaluate(self, proposal: Proposal) -> Evaluation:
        """Run the objective on a proposal; the result accounts for every proposed id."""
        return self.objective(proposal.ids, proposal.smiles).complete(proposal.ids)

    def record(self, proposal: Proposal, evaluation: Evaluation, evaluate_s: float = 0.0) -> RoundRecord:
        """Store a proposal's evaluation as the next round; ids the evaluation lacks become failures."""
        state = self.state
        if proposal.round != self.next_round:
            raise ValueError(f"proposal is for round {proposal.round}, the loop is at round {self.next_round}")
        evaluation = evaluation.complete(proposal.ids)
        for cid, smi in zip(proposal.ids, proposal.smiles):
            if cid in evaluation.scores:
                state.scores[cid] = evaluation.scores[cid]
                state.smiles[cid] = smi
                state.docked_round[cid] = proposal.round
            else:
                state.failures[cid] = (OBJECTIVE_STAGE, evaluation.failures[cid])
        scores = np.fromiter(state.scores.values(), dtype=np.float64)
        record = RoundRecord(
            round=proposal.round,
            acquired=len(proposal.ids),
            scored=len(evaluation.scores),
            failed=len(evaluation.failures),
            spent_total=state.spent,
            docked_total=len(state.scores),
            fraction_spent=state.spent / max(1, state.library_size),
            best_score=float(scores.min()) if len(scores) else float("nan"),
            top_k_mean=_top_k_mean(state.scores, self.settings.stopping.top_k),
            fit_s=proposal.fit_s,
            predict_s=proposal.predict_s,
            evaluate_s=evaluate_s,
            cpu_s=time.process_time() - proposal.cpu_start,
            fit=proposal.fit,
            **_batch_accuracy(proposal, evaluation),
        )
        state.rounds.append(record)
        if not proposal.ids:  # nothing left that could be proposed
            state.stopped = state.stopped or "exhausted"
        self.done  # noqa: B018 (records the stop reason as soon as it holds)
        return record

    def step(self) -> RoundRecord:
        """Propose, evaluate and record one round."""
        proposal = self.propose()
        t0 = time.perf_counter()
        evaluation = self.evaluate(proposal)
        return self.record(proposal, evaluation, time.perf_counter() - t0)

    def run(self) -> LoopState:
        """Rounds until a stop reason holds; returns the state (``state.stopped`` says why)."""
        while not self.done:
            self.step()
        return self.state

    # ------------------------------------------------------------------ after the screen
    def predicted(self) -> Iterator[pd.DataFrame]:
        """The undocked compounds with a prediction from a surrogate fitted on everything docked, chunk by chunk.

        Yields ``id, smiles, predicted_score, predicted_sd`` tables. Compounds without features
        are added to ``state.failures`` (stage :data:`SURROGATE_STAGE`) instead; once the
        iterator is exhausted every library compound is in exactly one of the scores, the
        yielded tables, or the failures.
        """
        state = self.state
        ids = list(state.scores)
        self.surrogate.fit(
            [state.smiles[i] for i in ids], np.array([state.scores[i] for i in ids]), _round_seed(state.seed, FINAL_FIT)
        )
        for part in predict_chunks(self.surrogate, self.library.chunks(), self._excluded()):
            valid = np.isfinite(part.mean)
            for k in np.flatnonzero(~valid):
                state.failures[part.ids[k]] = (SURROGATE_STAGE, NO_FEATURES)
            yield part.frame()[valid].reset_index(drop=True)

    def docked_frame(self) -> pd.DataFrame:
        """``id, smiles, score, round`` of every scored compound, in the order they were scored."""
        s = self.state
        return pd.DataFrame(
            {
                "id": list(s.scores),
                "smiles": [s.smiles[i] for i in s.scores],
                "score": list(s.scores.values()),
                "round": [s.docked_round[i] for i in s.scores],
            }
        )

    def failures_frame(self) -> pd.DataFrame:
        """``id, stage, reason`` of every failure (the workflow's failures.csv columns)."""
        rows = [(i, stage, reason) for i, (stage, reason) in self.state.failures.items()]
        return pd.DataFrame(rows, columns=["id", "stage", "reason"])
