"""One small module per topic of the course notes: layout and event wiring only.

TABS lists them in the order of the notes, then the comparison of all families; each module has
TITLE and build() (called inside a gr.Tab). A module whose topic is not built yet shows what is
coming instead.
"""

TABS = ["autoregressive", "latent", "flows", "gans", "ebm", "compare"]
