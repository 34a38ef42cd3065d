"""Latent-variable models (notes ch. 4): the Gaussian mixture (mixture.py) and the VAE (vae.py), its latent
quadrature (quadrature.py) and its probe (vae_probe.py)."""
