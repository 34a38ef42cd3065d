"""A training session, in four parts: the loop (run.py: Session, stop and restore), its history (history.py),
its checkpoints (checkpoints.py) and its frames (drawing.py: FrameMaker builds the Snapshots); health.py holds
the divergence rule the loop and the command line share, devices.py where a run computes.

Sessions hold no global state: a web visitor owns one in gr.State."""

from ..snapshot import Snapshot
from .devices import configure_threads, device_label, resolve_device, warm_up
from .drawing import EVAL_INTERVAL, MAX_LIVE_RES, MIN_LIVE_RES, FrameMaker
from .health import EXPLODED, NLL_MARGIN, bad_evaluation, bad_term, first_line
from .history import History, pow2_bin
from .run import CHECKPOINT_INTERVAL, MAX_FRAME_GAP, MAX_FRAME_SHARE, MIN_FRAME_INTERVAL, Session, stop_all

__all__ = ["CHECKPOINT_INTERVAL", "EVAL_INTERVAL", "EXPLODED", "MAX_FRAME_GAP", "MAX_FRAME_SHARE", "MAX_LIVE_RES",
           "MIN_FRAME_INTERVAL", "MIN_LIVE_RES", "NLL_MARGIN", "FrameMaker", "History", "Session", "Snapshot",
           "bad_evaluation", "bad_term", "configure_threads", "device_label", "first_line", "pow2_bin",
           "resolve_device", "stop_all", "warm_up"]
