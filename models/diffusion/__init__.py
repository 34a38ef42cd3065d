"""Diffusion and flow matching: the family the notes' score matching and Langevin sampling (7.3-7.4) lead to."""
