"""What every imagerepo gRPC service shares: JSON logs, health, reflection, graceful shutdown."""
