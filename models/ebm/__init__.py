"""Energy-based models (notes ch. 7): the models (model.py: contrastive divergence, score matching, NCE) and
their losses (losses.py); the samplers they share with the sandbox are models/samplers.py."""
