"""Training: the distillation objective, masking, corpus shards, student init, the loops, checkpoints."""
