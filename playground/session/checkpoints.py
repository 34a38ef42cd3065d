"""A run's last good states, to go back to when it diverges (the policy is the session's: run.py).

Two checkpoints are kept, the older one refreshed in place (a deepcopy per frame cost several ms for a flow
with a few hundred small tensors; copying into kept buffers costs well under one). Each holds the model's
parameters and buffers, every optimiser's state and every random generator's state, so that the steps after
it can be taken again exactly (a replay).
"""

from __future__ import annotations

import copy
from typing import Any

import torch


class Checkpoints:
    """The two newest good states of one model and its optimisers.

    Args:
        model: the model (its state_dict is kept).
        optimizers: the session's optimisers by name (kept by reference: live changes of their rates are seen).
        gen: the session's own generator (batches); the model's own generators are found on it.
        device: where the run computes (CUDA's generator state is kept there).
    """

    def __init__(self, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer], gen: torch.Generator,
                 device: torch.device):
        self.model, self.optimizers, self.gen, self.device = model, optimizers, gen, device
        self.slots: list[dict] = []  # oldest first

    def generators(self) -> list[tuple[str, torch.Generator]]:
        """Every random generator a step may draw from: the session's (batches) and the model's own (attributes,
        or dicts of them, of any submodule). torch's global generator is not among them: no run draws from it
        after its model is built (Session.__init__), and putting it back would reach into other sessions."""
        gens = [("session", self.gen)]
        for mod_name, mod in self.model.named_modules():
            for attr, v in vars(mod).items():
                if isinstance(v, torch.Generator):
                    gens.append((f"{mod_name}.{attr}", v))
                elif isinstance(v, dict):
                    gens += [(f"{mod_name}.{attr}[{k}]", g) for k, g in v.items() if isinstance(g, torch.Generator)]
        return gens

    def rng_state(self) -> dict:
        return {name: g.get_state() for name, g in self.generators()}

    def set_rng_state(self, state: dict) -> bool:
        """Put every generator back; False when one exists now that the checkpoint did not know (a replay
        would draw differently)."""
        complete = True
        for name, g in self.generators():
            if name in state:
                g.set_state(state[name])
            else:
                complete = False
        return complete

    def take(self, step: int) -> None:
        """Keep the current state as the newest good one, at `step` (the older of two is overwritten)."""
        slot = self.slots.pop(0) if len(self.slots) == 2 else {"state": None, "opts": {}}
        slot["state"] = _copy_into(self.model.state_dict(), slot["state"])
        slot["opts"] = {k: _copy_into(o.state_dict(), slot["opts"].get(k)) for k, o in self.optimizers.items()}
        slot["rng"] = self.rng_state()
        slot["step"] = step
        self.slots.append(slot)

    def capture(self, step: int) -> dict:
        """The current state as a slot of its own, outside the two kept for divergence (the session's best
        held-out state: early stopping)."""
        return {"state": _copy_into(self.model.state_dict(), None),
                "opts": {k: _copy_into(o.state_dict(), None) for k, o in self.optimizers.items()},
                "rng": self.rng_state(), "step": step}

    @property
    def newest_step(self) -> int:
        return self.slots[-1]["step"]

    def at_or_before(self, target: int | None) -> dict:
        """The newest checkpoint at or before step `target` (None: the newest), else the oldest kept."""
        fits = [sl for sl in self.slots if target is None or sl["step"] <= target] or self.slots[:1]
        return fits[-1]

    def load(self, slot: dict) -> bool:
        """Put a checkpoint back (parameters, optimizer states, generators), keeping the optimisers' current
        rates (a slider moved since shows them); False if a generator is new since (see set_rng_state)."""
        self.model.load_state_dict(slot["state"])
        for k, o in self.optimizers.items():
            live = [{h: v for h, v in g.items() if h != "params"} for g in o.param_groups]
            # fresh copies: torch's load_state_dict may adopt the tensors it is given as the live state,
            # which would let later steps overwrite the kept checkpoint in place
            o.load_state_dict(_copy_into(slot["opts"][k], None))
            for g, hyper in zip(o.param_groups, live):
                g.update(hyper)
        return self.set_rng_state(slot["rng"])


def _copy_into(tree: Any, prev: Any) -> Any:
    """A detached copy of a (nested dict / list of) tensors, written into `prev`'s tensors where
    they match in shape, dtype and device (so repeated checkpoints allocate nothing)."""
    if isinstance(tree, torch.Tensor):
        if (isinstance(prev, torch.Tensor) and prev.shape == tree.shape and prev.dtype == tree.dtype
                and prev.device == tree.device):
            return prev.copy_(tree.detach())
        return tree.detach().clone()
    if isinstance(tree, dict):
        prev = prev if isinstance(prev, dict) else {}
        out = type(tree)() if type(tree) is not dict else {}
        for k, v in tree.items():
            out[k] = _copy_into(v, prev.get(k))
        return out
    if isinstance(tree, (list, tuple)):
        prev = prev if isinstance(prev, (list, tuple)) and len(prev) == len(tree) else [None] * len(tree)
        return type(tree)(_copy_into(v, q) for v, q in zip(tree, prev))
    return copy.deepcopy(tree)
