"""The gateway: the HTML gallery and the JSON REST API over the three gRPC services."""
