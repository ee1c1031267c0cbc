"""Inference: the Predictor (the only inference path), batching, runtime policy, the pipeline drop-in."""
