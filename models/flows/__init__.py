"""Normalizing flows (notes ch. 5): the invertible layers (layers.py), the flow model and the classic flows
(model.py: planar, NICE, Real NVP, MAF, IAF), the MAF -> IAF student (student.py) and the neural spline
flow (spline.py)."""
