"""Tau curves of two policies compared: how many judgments one needs to reach the other's tau.

Plain Python with no imports, so that bench/policy_sim.py (which runs without the app) and
bench/quality.py share it.
"""


def reached_at(curve: dict[int, float], tau: float) -> float | None:
    """Where a mean tau curve (judgments -> tau, at checkpoints) first reaches `tau`, read off
    the straight line between the checkpoint before and the first one at or above it (from
    0 judgments and tau 0, where no vote orders anything, before the first checkpoint). Taking
    the checkpoint itself would count in whole steps between checkpoints: a quarter of the
    judgments at once where they are 150 apart at 600. None where the curve never reaches it."""
    before_n, before_tau = 0, 0.0
    for n, value in sorted(curve.items()):
        if value >= tau - 1e-9:
            if value <= before_tau:
                return float(n)
            return before_n + (n - before_n) * max(tau - before_tau, 0.0) / (value - before_tau)
        before_n, before_tau = n, value
    return None


def tau_reach(
    reference: dict[int, float], curve: dict[int, float]
) -> list[tuple[int, float, float | None]]:
    """For each checkpoint n of a reference policy's mean tau curve, below its best (where the
    curve has saturated, every policy reaches it at the end): (n, its tau, where `curve` first
    reaches that tau (reached_at), None if it never does)."""
    best = max(reference.values())
    return [
        (n, tau, reached_at(curve, tau))
        for n, tau in sorted(reference.items())
        if tau < best - 1e-9
    ]


def reach_line(reached: list[tuple[int, float, float | None]]) -> str:
    """tau_reach's pairs as "n->m (m/n - 1, so -25% is a quarter fewer judgments)", and the
    median saving over them (a checkpoint not reached counts as no saving)."""
    if not reached:
        return "no checkpoint below the reference's best"
    parts = [
        f"{n}->{round(m) if m is not None else '-'}" + (f" ({m / n - 1:+.0%})" if m else "")
        for n, _, m in reached
    ]
    return f"{', '.join(parts)}; median saving {median_saving(reached):.0%}"


def median_saving(reached: list[tuple[int, float, float | None]]) -> float:
    """The median of 1 - m/n over tau_reach's pairs (not reached: no saving)."""
    saved = sorted((1 - m / n) if m else 0.0 for n, _, m in reached)
    middle = len(saved) // 2
    return saved[middle] if len(saved) % 2 else (saved[middle - 1] + saved[middle]) / 2
