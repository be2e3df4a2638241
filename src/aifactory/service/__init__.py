"""The live control plane: REST API, database, scheduler loop and executors."""
