"""The vision service: pretrained ONNX models for labels, features, moderation, OCR, text."""

SERVICE_NAME = "imagerepo.vision.v1.VisionService"
