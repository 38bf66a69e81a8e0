"""Warm Python sandboxes: the zygote, the worker in each jail, the API's handle on a sandbox, and the pool."""
