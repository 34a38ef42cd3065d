"""Generative adversarial networks (notes ch. 6): the classic GAN (gan.py), f-GANs (fgan.py), WGANs (wgan.py)."""
