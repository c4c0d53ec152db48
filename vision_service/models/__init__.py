"""What each model computes: its inputs, its outputs and their meaning. The runtime that runs
them is `vision_service.sessions`; nothing here knows about gRPC."""
