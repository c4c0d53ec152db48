"""The analysis worker: a consumer of storage's change feed that analyses pending images.

It claims PENDING images from storage's analysis queue (leases kept in storage, so several
workers share the work and a killed worker's images are picked up when its lease runs out),
reads their bytes, asks vision for labels, features, moderation and OCR for a whole batch at
once (so vision's micro-batcher runs full), and writes the result back with CompleteAnalysis.
The feed only wakes it up; a poll every few seconds means nothing depends on the feed alone.
"""

# The name its health service answers to (the worker serves no RPC of its own).
SERVICE_NAME = "imagerepo.analysis.v1.AnalysisWorker"
