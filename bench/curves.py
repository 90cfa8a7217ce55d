"""Tau curves of two policies compared: how many judgments one needs to reach the other's tau.

Plain Python with no imports, so that bench/policy_sim.py (which runs without the app) and
bench/quality.py share it.
"""


def tau_reach(
    reference: dict[int, float], curve: dict[int, float]
) -> list[tuple[int, float, int | None]]:
    """For each checkpoint n of a reference policy's mean tau curve, below its best (where the
    curve has saturated, every policy reaches it at the end): (n, its tau, the first checkpoint
    of `curve` at or above that tau, None if none)."""
    best = max(reference.values())
    return [
        (n, tau, next((m for m, t in sorted(curve.items()) if t >= tau - 1e-9), None))
        for n, tau in sorted(reference.items())
        if tau < best - 1e-9
    ]


def reach_line(reached: list[tuple[int, float, int | None]]) -> str:
    """tau_reach's pairs as "n->m (m/n - 1, so -25% is a quarter fewer judgments)", and the
    median saving over them (a checkpoint not reached counts as no saving)."""
    if not reached:
        return "no checkpoint below the reference's best"
    parts = [
        f"{n}->{m if m is not None else '-'}" + (f" ({m / n - 1:+.0%})" if m else "")
        for n, _, m in reached
    ]
    saved = sorted((1 - m / n) if m else 0.0 for n, _, m in reached)
    middle = len(saved) // 2
    median = saved[middle] if len(saved) % 2 else (saved[middle - 1] + saved[middle]) / 2
    return f"{', '.join(parts)}; median saving {median:.0%}"
