"""Evaluation: pure metrics, dataset readers, and evaluate() through the Predictor."""
