"""When a run has diverged: the rule the session and the command line share (see playground/session/run.py)."""

from __future__ import annotations

import math

EXPLODED = 1e10  # a loss term or an NLL beyond this magnitude counts as diverged (see the module docstring)
NLL_MARGIN = 1000.0  # ... and an NLL this far above a Gaussian fit's (nats per point)


def first_line(err: BaseException, limit: int = 200) -> str:
    """An error's first line for a one-line message: cut at a word boundary, with an ellipsis, when it is
    longer than `limit` characters (torch's messages can run to several hundred)."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0].strip() or type(err).__name__
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else text[:limit]) + "…"


def bad_term(terms: dict[str, float]) -> str | None:
    """Why a step's loss terms say the run diverged (NaN, infinite or beyond ±EXPLODED), or None."""
    for k, v in terms.items():
        if not math.isfinite(v):
            return f"the {k} became {v}"
        if abs(v) > EXPLODED:
            return f"the {k} reached {v:.3g} (beyond ±{EXPLODED:.0e}: exploded)"
    return None


def bad_evaluation(values: dict[str, float], nll_limit: float = EXPLODED) -> str | None:
    """Why held-out metrics say the model diverged, or None: non-finite samples (their energy distance or MMD
    is not finite: the test points are), a NaN NLL or grid log Z, a finite NLL beyond ±EXPLODED nats, or one
    above `nll_limit` (a Session's: NLL_MARGIN above a Gaussian fit's)."""
    for k in ("energy_distance", "mmd"):
        if k in values and not math.isfinite(values[k]):
            return "the model's samples are no longer finite"
    if "log_z_grid" in values and not math.isfinite(values["log_z_grid"]):
        return f"the grid's log Z became {values['log_z_grid']}"
    for k in ("train_nll", "test_nll"):
        v = values.get(k)
        if v is not None and (math.isnan(v) or (math.isfinite(v) and abs(v) > EXPLODED)):
            return f"the {k.replace('_nll', '')} NLL reached {v:.3g} nats (exploded)"
        if v is not None and math.isfinite(v) and v > nll_limit:
            return (f"the {k.replace('_nll', '')} NLL reached {v:.3g} nats, over {NLL_MARGIN:.0f} above a "
                    "Gaussian fit's (exploded)")
    return None
