"""The gateway's HTTP API under ``/api/v1`` (agents and operators) and the AXME-compatible ``/v1/mesh``."""
