"""Programmatic tool calling (POST /exec/programmatic): programs that call the client's tools."""
