"""Posterior sampling with emcee's affine-invariant ensemble (``--method mcmc``).

The posterior of the fitted parameters has a uniform prior within the bounds and the
Gaussian likelihood of the fitted rows: ``log L = -J`` when the data give ``sigma``;
otherwise the noise scale is integrated out (Jeffreys prior), ``log L = -n/2 log RSS``.
The walkers start in a small ball around the least-squares estimate (from its covariance,
clipped to the bounds).

Parallel: under MPI the ranks form groups of ``ranks_per_chain`` (sub-communicators, each
with its own copy of the problem); emcee runs identically on every rank (same seed), and
each group evaluates its share of the walkers' proposals (:class:`GroupMap`).

Resumable: rank 0 writes ``chains.npz`` (every chain so far, log-probabilities, model
predictions, the random state) every few steps, atomically; a call with the same
calibration in the same directory continues from it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpi4py import MPI

import numpy as np

from tumorpde.calibration.objective import Objective
from tumorpde.errors import ConfigError

__all__ = ["GroupMap", "Posterior", "sample"]


class GroupMap:
    """``map`` for emcee: groups of ranks evaluate the proposals in turn, all get all values."""

    def __init__(self, world: MPI.Comm, sub: MPI.Comm) -> None:
        self.world, self.sub = world, sub
        self.groups = world.size // sub.size
        self.group = world.rank // sub.size

    def map(self, f: Callable[[Any], Any], xs: Sequence[Any]) -> list[Any]:
        """``[f(x) for x in xs]``, each evaluated by one group (collective over ``world``)."""
        xs = list(xs)
        mine = {i: f(x) for i, x in enumerate(xs) if i % self.groups == self.group}
        if self.world.size == 1:
            return [mine[i] for i in range(len(xs))]
        parts = self.world.allgather(mine if self.sub.rank == 0 else {})
        out: dict[int, Any] = {}
        for p in parts:
            out.update(p)
        return [out[i] for i in range(len(xs))]


@dataclass
class Posterior:
    """Samples after burn-in and what the sampler did."""

    samples: np.ndarray
    log_prob: np.ndarray
    predictions: np.ndarray
    chain: np.ndarray
    acceptance: float
    autocorr: list[float | None]
    steps: int
    burn: int
    walkers: int
    resumed_from: int


def _key(names: Sequence[str], low: np.ndarray, high: np.ndarray, n_data: int,
         walkers: int, seed: int, value: np.ndarray) -> str:
    text = json.dumps([list(names), low.tolist(), high.tolist(), n_data, walkers, seed,
                       hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()])
    return hashlib.sha1(text.encode()).hexdigest()


def sample(full: Objective, fitted: np.ndarray, low: np.ndarray, high: np.ndarray,
           start: np.ndarray, cov: np.ndarray, sigma_given: bool, *, walkers: int, steps: int,
           burn: int, seed: int, world: MPI.Comm, checkpoint: Path | None,
           every: int = 10) -> Posterior:
    """Run the ensemble sampler (collective over ``world``).

    Args:
        full: The objective over every data row (its model values are the predictions).
        fitted: Mask of the rows in the likelihood.
        low: Lower bounds.
        high: Upper bounds.
        start: Centre of the initial ball (the least-squares estimate).
        cov: Its covariance (the ball's shape).
        sigma_given: Whether the data give sigma.
        walkers: Number of walkers (at least twice the parameters).
        steps: Steps of every walker in all (a resumed run continues to ``steps``).
        burn: Steps discarded at the start.
        seed: Seed of the ball and the sampler.
        world: Every rank of the calibration.
        checkpoint: ``chains.npz`` to write (rank 0) and resume from.
        every: Steps between checkpoints.

    Raises:
        ConfigError: Too few walkers, burn-in not shorter than the run, emcee missing.
    """
    try:
        import emcee
    except ImportError:
        raise ConfigError("--method", "mcmc needs emcee (pip install \"tumorpde[calibrate]\")") \
            from None
    k = start.size
    if walkers < 2 * k:
        raise ConfigError("--walkers", f"needs at least {2 * k} walkers for {k} parameters")
    if not 0 <= burn < steps:
        raise ConfigError("--burn", f"must lie in [0, steps={steps}), got {burn}")
    n = int(fitted.sum())
    sub = full.problem.comm
    pool = GroupMap(world, sub)

    def log_prob(x: np.ndarray) -> tuple[float, np.ndarray]:
        if np.any(x < low) or np.any(x > high):
            return -math.inf, np.full(full.n_data, np.nan)
        ev = full.evaluate(x)
        if not ev.ok:
            return -math.inf, np.full(full.n_data, np.nan)
        r = ev.residuals[fitted]
        rss = float(r @ r)
        lp = -0.5 * rss if sigma_given else -0.5 * n * math.log(max(rss, 1e-300))
        return lp, ev.model.copy()

    key = _key(full.names, low, high, n, walkers, seed, full.value)
    chain, lps, blobs, state, done = _resume(checkpoint, key, world)
    sampler = emcee.EnsembleSampler(walkers, k, log_prob, pool=pool,
                                    blobs_dtype=[("model", float, (full.n_data,))])
    if state is None:
        sampler.random_state = np.random.RandomState(seed).get_state()  # same on every rank
        init: Any = _ball(start, cov, low, high, walkers, seed)
    else:
        init = emcee.State(state["coords"], log_prob=state["log_prob"],
                           blobs=state["blobs"], random_state=state["random_state"])
    todo = steps - done
    prev = (chain, lps, blobs)
    for i, st in enumerate(sampler.sample(init, iterations=max(todo, 0), store=True)):
        if checkpoint is not None and ((i + 1) % every == 0 or i + 1 == todo):
            _save(checkpoint, key, world, prev, sampler, st)
    if todo > 0:
        prev = tuple(np.concatenate([a, b]) if a is not None else b for a, b in
                     zip(prev, (sampler.get_chain(), sampler.get_log_prob(),
                                sampler.get_blobs()["model"]), strict=True))
    all_chain, all_lp, all_blobs = prev
    acc = float(np.mean(sampler.acceptance_fraction)) if todo > 0 else float("nan")
    try:
        tau = emcee.autocorr.integrated_time(all_chain[burn:], quiet=True)
        autocorr = [float(t) if math.isfinite(t) else None for t in tau]
    except Exception:  # noqa: BLE001 - too short a chain for an estimate
        autocorr = [None] * k
    return Posterior(all_chain[burn:].reshape(-1, k), all_lp[burn:].reshape(-1),
                     all_blobs[burn:].reshape(-1, full.n_data), all_chain, acc, autocorr,
                     steps, burn, walkers, done)


def _ball(start: np.ndarray, cov: np.ndarray, low: np.ndarray, high: np.ndarray,
          walkers: int, seed: int) -> np.ndarray:
    """Initial walkers: half a standard deviation around ``start``, inside the bounds."""
    rng = np.random.default_rng(seed)
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1e-3 * (high - low))
    width = np.minimum(sd, 0.1 * (high - low))
    return np.clip(start + 0.5 * width * rng.standard_normal((walkers, start.size)),
                   low + 1e-9 * (high - low), high - 1e-9 * (high - low))


def _resume(path: Path | None, key: str, world: MPI.Comm) -> tuple[Any, Any, Any, Any, int]:
    """The chains of an earlier call with the same calibration (every rank reads)."""
    if path is None or not path.exists():
        return None, None, None, None, 0
    data = None
    if world.rank == 0:
        with np.load(path, allow_pickle=True) as z:
            data = {k: z[k] for k in z.files}
    data = world.bcast(data, root=0)
    if str(data["key"]) != key:
        raise ConfigError("--output", f"{path} holds the chains of a different calibration "
                                      "(other data, parameters, bounds, walkers or seed): use "
                                      "another output directory")
    chain, lps, blobs = data["chain"], data["log_prob"], data["blobs"]
    state = {"coords": chain[-1], "log_prob": lps[-1], "blobs": data["last_blobs"],
             "random_state": tuple(data["random_state"].tolist())}
    return chain, lps, blobs, state, int(chain.shape[0])


def _save(path: Path, key: str, world: MPI.Comm, prev: tuple[Any, Any, Any], sampler: Any,
          state: Any) -> None:
    """Rank 0 writes every chain so far and the sampler's state (write then rename)."""
    if world.rank != 0:
        return
    chain, lps, blobs = prev
    c, lp, b = sampler.get_chain(), sampler.get_log_prob(), sampler.get_blobs()["model"]
    if chain is not None:
        c, lp, b = (np.concatenate([chain, c]), np.concatenate([lps, lp]),
                    np.concatenate([blobs, b]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, key=key, chain=c, log_prob=lp, blobs=b, last_blobs=state.blobs,
             random_state=np.array(state.random_state, dtype=object))
    tmp.replace(path)
