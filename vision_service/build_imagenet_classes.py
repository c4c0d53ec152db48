"""One-off tool: build `models/imagenet_classes.json`, the 1000 ImageNet-1k class names with
their WordNet synonyms, in the classifier's class-index order.

Not imported by the service. Sources (both are pip wheels, read with zipfile, never installed):
- names: `_IMAGENET_CATEGORIES` in `torchvision/models/_meta.py` of the torchvision wheel
  (BSD-3-Clause): one short, readable name per class ("tabby", "tiger cat").
- synonyms: `timm/data/_info/imagenet_synsets.txt` (the 1000 WordNet ids, in class order) and
  `timm/data/_info/imagenet_synset_to_lemma.txt` (WordNet lemmas per id: "tabby, tabby cat")
  of the timm wheel (Apache-2.0; the lemmas are WordNet's, under the WordNet licence).

    pip download --no-deps torchvision timm -d /tmp/wheels
    python vision_service/build_imagenet_classes.py /tmp/wheels/torchvision-*.whl \
        /tmp/wheels/timm-*.whl models/imagenet_classes.json
"""

from __future__ import annotations

import ast
import json
import sys
import zipfile
from pathlib import Path


def torchvision_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        tree = ast.parse(z.read("torchvision/models/_meta.py").decode())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == (
            "_IMAGENET_CATEGORIES"
        ):
            names = ast.literal_eval(node.value)
            assert len(names) == 1000
            return list(names)
    raise ValueError(f"_IMAGENET_CATEGORIES not found in {wheel}")


def timm_lemmas(wheel: Path) -> tuple[list[str], dict[str, list[str]]]:
    with zipfile.ZipFile(wheel) as z:
        wnids = z.read("timm/data/_info/imagenet_synsets.txt").decode().split()
        lemma_lines = z.read("timm/data/_info/imagenet_synset_to_lemma.txt").decode()
    assert len(wnids) == 1000
    lemmas: dict[str, list[str]] = {}
    for line in lemma_lines.splitlines():
        wnid, _, words = line.partition("\t")
        lemmas[wnid] = [w.strip() for w in words.split(",") if w.strip()]
    return wnids, lemmas


def build(torchvision_wheel: Path, timm_wheel: Path) -> list[dict[str, object]]:
    names = torchvision_names(torchvision_wheel)
    wnids, lemmas = timm_lemmas(timm_wheel)
    classes = []
    for index, (name, wnid) in enumerate(zip(names, wnids, strict=True)):
        words = lemmas[wnid]
        synonyms = [w for w in words if w.lower() != name.lower()]
        classes.append({"index": index, "name": name, "wnid": wnid, "synonyms": synonyms})
    return classes


if __name__ == "__main__":
    tv, timm, out = (Path(a) for a in sys.argv[1:4])
    classes = build(tv, timm)
    out.write_text(json.dumps(classes, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(classes)} classes -> {out}")
