"""The operator client: ``AsyncMesh`` and its blocking twin ``Mesh``."""
