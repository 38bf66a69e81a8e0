"""Warm Python sandboxes: the zygote, the in-sandbox supervisor and worker, and the pool (stdlib only here)."""
