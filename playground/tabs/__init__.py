"""One small module per topic of the course notes: layout and event wiring only.

TABS lists them in the order of the notes, then the comparison of all families; each module has
TITLE and build() (called inside a gr.Tab). A module whose topic is not built yet shows what is
coming instead.
"""

TABS = ["primer", "lessons", "autoregressive", "latent", "flows", "gans", "ebm", "diffusion", "compare"]


def panels_for(key: str):
    """(the TabSpec of the tab showing model `key`, its panels as (name, height), that model's usual
    training settings): what `bench frames` lays out."""
    import importlib

    for name in TABS:
        spec = getattr(importlib.import_module(f"{__name__}.{name}"), "SPEC", None)
        if spec is not None and key in spec.models:
            settings = {**spec.settings, **spec.model_settings.get(key, {})}
            return spec, [(n, h) for n, _, h in spec.panels], settings
    raise KeyError(f"no tab shows model '{key}'")
