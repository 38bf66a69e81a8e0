"""Jails: the policy as data, nsjail rendering, the one runner that starts a jail, cgroups, workspaces and the host."""
