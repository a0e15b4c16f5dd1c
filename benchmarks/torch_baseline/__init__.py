"""PyTorch reference baseline for timing jaxdd's trajectory matching (not part of jaxdd)."""
