"""How often one task holds more than 99% of GO4Align's smooth-alignment Q, over a long run.

The loss process (per trial, ``M`` tasks, ``T`` steps, numpy seed ``seed``):

* each task has a fixed scale ``s_m``, log-uniform in [1e-4, 1e4];
* its log-loss fluctuates around it as a mean-reverting random walk (AR(1) in log space):
  ``Z_t = rho Z_{t-1} + sqrt(1 - rho^2) * sigma * eps_t``, ``Z_0 ~ N(0, sigma^2)``, ``eps`` standard
  normal, ``sigma = 0.5`` (losses wander by about x1.6), ``rho = 1 - 1/1000`` (a correlation time of
  1,000 steps);
* ``L_{m,t} = s_m * exp(Z_{m,t})``, clipped to [1e-4, 1e4].

Q is computed in closed form from cumulative sums (Eq. 6: ``Q_t = softmax(-beta * sum_{tau<=t}
r_tau)``), with ``r = L`` (the paper, "absolute") or ``r_t = L_t / mean(L_1..L_t)`` per task
(GO4Align's default, "relative"). Reported per form and beta, over all trials and steps: the
fraction of steps in which the largest Q exceeds 0.99, and the fraction in which some task's Q is
below 1e-8 (where the default weight floor would hold it).

    python experiments/q_collapse.py --steps 1000000 --tasks 4 --trials 10 --betas 1e-4,1
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.signal import lfilter

SIGMA = 0.5
RHO = 1 - 1 / 1000


def losses(steps: int, tasks: int, rng: np.random.Generator) -> np.ndarray:
    """``[steps, tasks]`` losses of the process in the module docstring."""
    scales = 10.0 ** rng.uniform(-4, 4, tasks)
    noise = rng.standard_normal((steps, tasks)) * (np.sqrt(1 - RHO**2) * SIGMA)
    noise[0] = rng.standard_normal(tasks) * SIGMA  # start in the stationary law
    walk = lfilter([1.0], [1.0, -RHO], noise, axis=0)  # Z_t = rho Z_{t-1} + noise_t
    return np.clip(scales * np.exp(walk), 1e-4, 1e4)


def risks(loss: np.ndarray, form: str) -> np.ndarray:
    if form == "absolute":
        return loss
    steps = np.arange(1, loss.shape[0] + 1, dtype=np.float64)[:, None]
    return loss * steps / np.cumsum(loss, axis=0)


def log_q(risk: np.ndarray, beta: float) -> np.ndarray:
    """log Q_t for every step (Eq. 6 in closed form), ``[steps, tasks]``."""
    logits = -beta * np.cumsum(risk, axis=0)
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def measure(steps: int, tasks: int, trials: int, betas: list[float], seed: int) -> list[dict]:
    rows = []
    counts = {(form, beta): [0, 0] for form in ("absolute", "relative") for beta in betas}
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        loss = losses(steps, tasks, rng)
        for form in ("absolute", "relative"):
            risk = risks(loss, form)
            for beta in betas:
                q = log_q(risk, beta)
                counts[form, beta][0] += int((q.max(axis=1) > np.log(0.99)).sum())
                counts[form, beta][1] += int((q.min(axis=1) < np.log(1e-8)).sum())
    total = steps * trials
    for (form, beta), (dominated, floored) in counts.items():
        rows.append(
            {
                "form": form,
                "beta": beta,
                "one_task_over_99pct": dominated / total,
                "some_task_below_1e-8": floored / total,
            }
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--betas", default="1e-4,1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.tasks < 2 or args.trials < 1:
        parser.error(f"need --steps >= 1, --tasks >= 2, --trials >= 1; got {args.steps}, {args.tasks}, {args.trials}")
    betas = [float(b) for b in args.betas.split(",")]
    rows = measure(args.steps, args.tasks, args.trials, betas, args.seed)
    print(f"{args.trials} trials x {args.steps} steps, {args.tasks} tasks, losses 1e-4..1e4 (see docstring)")
    print("| Eq. 6 on | beta | steps with one task > 99% of Q | steps with some Q < 1e-8 |")
    print("|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['form']} | {row['beta']:g} | {row['one_task_over_99pct']:.1%} | {row['some_task_below_1e-8']:.1%} |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"arguments": vars(args), "rows": rows}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
