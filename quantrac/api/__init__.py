"""The HTTP API and the operator board, served by `quantrac run` or alone by `quantrac api`."""
