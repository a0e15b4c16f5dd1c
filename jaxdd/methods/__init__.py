"""Distillation methods: one module per method (Config, init, step, run)."""
