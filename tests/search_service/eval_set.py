"""A labelled evaluation set for search: 42 real photos that ship in packages, 66 queries.

Photos come from scikit-image, scikit-learn and Debian's `mate-backgrounds` and
`lomiri-wallpapers-16.04/-20.04` (only regenerating the cache needs all of them; the test that
re-runs the models needs `mate-backgrounds`, and skips those photos without it). Relevance was
judged by looking at
each photo (the `seen` column says what is in it). They are indexed under neutral camera-style
names (IMG_0001.jpg ...) in a shuffled order, so no filename gives a photo away; four of the
Debian photos carry real EXIF (camera and date taken), which the date and camera queries use.

The real vision service's analysis of every photo (20 labels, OCR text and dominant colours
(vision's colours module on the same upload bytes), exactly what the gateway indexes) is cached
in `eval_analysis.json`, produced by this module:

    .venv/bin/python -m tests.search_service.eval_set    # runs the real models, ~1 min

The quality test re-runs the models on a subset and checks the cache still matches them.
"""

from __future__ import annotations

import io
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.ingest import ANALYSIS_TOP_K

ANALYSIS = Path(__file__).with_name("eval_analysis.json")
# Labels per photo: exactly what the gateway asks vision for and indexes.
TOP_K = ANALYSIS_TOP_K
BG = "/usr/share/backgrounds/"


@dataclass(frozen=True)
class Photo:
    key: str  # our name for it; never indexed
    source: str  # "skimage:<file>", "sklearn:<file>" or an absolute path from a Debian package
    seen: str  # what is in the photo, judged by looking at it


PHOTOS = (
    Photo("chelsea", "skimage:chelsea.png", "tabby cat, face close-up"),
    Photo("coffee", "skimage:coffee.png", "espresso in a red cup and saucer, spoon, table"),
    Photo("rocket", "skimage:rocket.jpg", "rocket on a launch pad at dusk, towers, lights"),
    Photo("motorcycle", "skimage:motorcycle_left.png", "red motorcycle in a garage"),
    Photo("astronaut", "skimage:astronaut.png", "astronaut in orange suit, flag, helmet"),
    Photo("cameraman", "skimage:camera.png", "man with a camera on a tripod, field (grey)"),
    Photo("coins", "skimage:coins.png", "old coins on a dark ground (grey)"),
    Photo("moon", "skimage:moon.png", "surface of the moon, craters (grey)"),
    Photo("blurclock", "skimage:clock_motion.png", "wall clock blurred by motion (grey)"),
    Photo("hubble", "skimage:hubble_deep_field.jpg", "galaxies in deep space"),
    Photo("retina", "skimage:retina.jpg", "retina of an eye, blood vessels"),
    Photo("grasstex", "skimage:grass.png", "grass, close texture (grey)"),
    Photo("brick", "skimage:brick.png", "brick wall (grey)"),
    Photo("china", "sklearn:china.jpg", "Chinese temple pagoda above a lake, trees"),
    Photo("dahlia", "sklearn:flower.jpg", "orange dahlia flower"),
    Photo("splash", BG + "mate/nature/Aqua.jpg", "water drop splashing into water"),
    Photo("leafveins", BG + "mate/nature/Blinds.jpg", "green leaf veins close-up"),
    Photo("dunegrass", BG + "mate/nature/Dune.jpg", "dune grass, sea and sky behind"),
    Photo("redflower", BG + "mate/nature/FreshFlower.jpg", "orange-red flower close-up"),
    Photo("marigold", BG + "mate/nature/Garden.jpg", "red and yellow marigold flower"),
    Photo("meadow", BG + "mate/nature/GreenMeadow.jpg", "green grass blades"),
    Photo("ladybird", BG + "mate/nature/LadyBird.jpg", "ladybird on a stem, forget-me-nots"),
    Photo("raindrops", BG + "mate/nature/RainDrops.jpg", "water drops on green leaves"),
    Photo("storm", BG + "mate/nature/Storm.jpg", "storm clouds over a road, motion blur"),
    Photo("seedfluff", BG + "mate/nature/TwoWings.jpg", "two dandelion seeds, orange blur"),
    Photo("planks", BG + "mate/nature/Wood.jpg", "wooden planks close-up"),
    Photo("yellowflower", BG + "mate/nature/YellowFlower.jpg", "yellow daisy-like flower"),
    Photo("bridge", BG + "Bridge_by_Sander_Klootwijk.jpg", "bridge cables, sky, tidal beach"),
    Photo("dragonfly", BG + "Dragonfly_by_Bolly.jpg", "dragonfly on a twig, leaves, sky"),
    Photo("milkyway", BG + "Infinite-Sea_by_Aury88.jpg", "milky way over the sea (art)"),
    Photo("nuthatch", BG + "Kleiber_by_Lukas_Baubkus.jpg", "nuthatch bird on a tree trunk"),
    Photo("fig", BG + "Picture_0B_by_freespace.jpg", "half a fig in a red bowl"),
    Photo("brushes", BG + "Picture_1A_by_freespace.jpg", "paint brushes, many colours"),
    Photo("wine", BG + "Wine_by_Jakkub_Mede.jpg", "wine bottle and glass, drum, bean bag"),
    Photo("autumn", BG + "aitzgorri_by_Aitzol_Berasategi.jpg", "mountain, autumn trees, meadow"),
    Photo("toybird", BG + "free_by_Peter_Nerlich.jpg", "toy bird hanging under lamps"),
    Photo("dogs", BG + "friends_by_Aitzol_Berasategi.jpg", "two spaniel dogs at a window"),
    Photo("wallclock", BG + "greentock_by_Peter_Nerlich.jpg", "wall clock, lit from behind"),
    Photo("stream", BG + "life_by_Aitzol_Berasategi.jpg", "forest stream, small waterfalls"),
    Photo("peaks", BG + "picosdeeuropa_by_Aitzol_Berasategi.jpg", "rocky snowy peaks, path"),
    Photo("dandelions", BG + "seeding_by_Clements_Engelhardt.jpg", "dandelion clocks, sunset"),
    Photo("sunset", BG + "sunset_by_Aitzol_Berasategi.jpg", "sun setting over mountains"),
)

FLOWERS = ("dahlia", "redflower", "marigold", "yellowflower", "ladybird")
# query -> the photos that answer it (judged by looking), and the kind of query.
QUERIES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("cat", ("chelsea",), "specific"),
    ("kitten", ("chelsea",), "specific"),
    ("espresso", ("coffee",), "specific"),
    ("coffee", ("coffee",), "specific"),
    ("rocket", ("rocket",), "specific"),
    ("motorcycle", ("motorcycle",), "specific"),
    ("motorbike", ("motorcycle",), "specific"),
    ("ladybug", ("ladybird",), "specific"),
    ("ladybird", ("ladybird",), "specific"),
    ("dragonfly", ("dragonfly",), "specific"),
    ("dog", ("dogs",), "specific"),
    ("spaniel", ("dogs",), "specific"),
    ("nuthatch", ("nuthatch",), "specific"),
    ("clock", ("wallclock", "blurclock"), "specific"),
    ("wine", ("wine",), "specific"),
    ("bottle", ("wine",), "specific"),
    ("coins", ("coins",), "specific"),
    ("fig", ("fig",), "specific"),
    ("paintbrush", ("brushes",), "specific"),
    ("daisy", ("yellowflower",), "specific"),
    ("dandelion", ("seedfluff", "dandelions"), "specific"),
    ("pagoda", ("china",), "specific"),
    ("temple", ("china",), "specific"),
    ("astronaut", ("astronaut",), "specific"),
    ("helmet", ("astronaut",), "specific"),
    ("tripod", ("cameraman",), "specific"),
    ("insect", ("ladybird", "dragonfly"), "general"),
    ("beetle", ("ladybird",), "general"),
    ("flower", FLOWERS, "general"),
    ("animal", ("chelsea", "dogs", "nuthatch", "ladybird", "dragonfly"), "general"),
    ("bird", ("nuthatch", "toybird"), "general"),
    ("mammal", ("chelsea", "dogs"), "general"),
    ("vehicle", ("motorcycle", "rocket"), "general"),
    ("beverage", ("coffee", "wine"), "general"),
    ("drink", ("coffee", "wine"), "general"),
    ("fruit", ("fig",), "general"),
    ("orange flower", ("dahlia", "redflower", "marigold"), "colour"),
    ("mountain", ("autumn", "peaks", "sunset"), "scene"),
    ("sky", ("storm", "bridge", "sunset", "rocket", "dunegrass", "peaks", "milkyway"), "scene"),
    ("sunset", ("sunset", "dandelions"), "scene"),
    ("grass", ("meadow", "dunegrass", "raindrops", "grasstex", "ladybird"), "scene"),
    ("leaf", ("leafveins", "raindrops", "dragonfly"), "scene"),
    ("water", ("splash", "stream", "raindrops", "milkyway", "dunegrass"), "scene"),
    ("storm", ("storm",), "scene"),
    ("beach", ("bridge", "dunegrass"), "scene"),
    ("waterfall", ("stream",), "scene"),
    ("forest", ("stream", "autumn"), "scene"),
    ("space", ("hubble", "moon", "milkyway"), "scene"),
    ("galaxy", ("hubble", "milkyway"), "scene"),
    ("eye", ("retina",), "scene"),
    ("brick", ("brick",), "scene"),
    ("wood", ("planks",), "scene"),
    ("2008", ("leafveins", "storm", "planks"), "date"),
    ("2007", ("dunegrass",), "date"),
    ("april 2008", ("storm", "planks"), "date"),
    ("canon", ("leafveins", "dunegrass", "storm"), "camera"),
    ("minolta", ("planks",), "camera"),
    # Colours, judged by looking at the photos.
    ("red", ("coffee", "motorcycle", "fig", "redflower", "marigold", "retina"), "colour"),
    ("orange", ("dahlia", "redflower", "marigold", "seedfluff"), "colour"),
    ("blue", ("rocket", "splash", "storm", "bridge", "dunegrass", "brushes"), "colour"),
    ("green", ("leafveins", "meadow", "raindrops", "ladybird", "dahlia", "marigold"), "colour"),
    ("red flower", ("redflower", "marigold"), "colour"),
    ("yellow flower", ("yellowflower", "marigold"), "colour"),
    ("red motorcycle", ("motorcycle",), "colour"),
    ("green leaf", ("leafveins", "raindrops"), "colour"),
    ("blue water", ("splash", "dunegrass"), "colour"),
    # Scene words from ImageNet's scene classes and from the dark / bright share of the frame.
    ("snow", ("peaks",), "scene"),
    ("lake", ("china",), "scene"),
    ("sea", ("dunegrass", "milkyway", "bridge"), "scene"),
    ("landscape", ("peaks", "autumn", "sunset", "stream", "dunegrass", "bridge", "china"), "scene"),
    ("dark", ("hubble", "coins", "rocket", "storm", "yellowflower"), "scene"),
    ("night", ("milkyway", "rocket", "hubble"), "scene"),
    ("bright", ("toybird", "planks", "wallclock", "bridge"), "scene"),
    # Other languages: the same photos as the English word (German, French, Spanish).
    *(
        (word, relevant, "language")
        for words, relevant in (
            (("Katze", "chat", "gato"), ("chelsea",)),
            (("Hund", "chien", "perro"), ("dogs",)),
            (("Blume", "fleur", "flor"), FLOWERS),
            (("Marienkäfer", "coccinelle", "mariquita"), ("ladybird",)),
            (("Vogel", "oiseau", "pájaro"), ("nuthatch", "toybird")),
            (("Uhr", "horloge", "reloj"), ("wallclock", "blurclock")),
            (("Wein", "vin", "vino"), ("wine",)),
            (("Berge", "montagne", "montaña"), ("autumn", "peaks", "sunset")),
            (("Strand", "plage", "playa"), ("bridge", "dunegrass")),
            (("Schnee", "neige", "nieve"), ("peaks",)),
            (("rote Blume", "fleur rouge", "flor roja"), ("redflower", "marigold")),
            (("April 2008", "avril 2008", "abril 2008"), ("storm", "planks")),
        )
        for word in words
    ),
)
# The language of each "language" query, in the order above (for per-language figures).
LANGUAGE_OF = {
    query: ("German", "French", "Spanish")[i % 3]
    for i, query in enumerate(q for q, _, kind in QUERIES if kind == "language")
}


def neutral_names() -> dict[str, str]:
    """Photo key -> the neutral filename it is indexed under (a fixed shuffle)."""
    keys = [p.key for p in PHOTOS]
    random.Random(14).shuffle(keys)
    return {key: f"IMG_{i + 1:04d}.jpg" for i, key in enumerate(keys)}


def photo_path(photo: Photo) -> Path:
    if photo.source.startswith("skimage:"):
        import skimage

        return Path(skimage.__file__).parent / "data" / photo.source.split(":", 1)[1]
    if photo.source.startswith("sklearn:"):
        import sklearn

        base = Path(sklearn.__file__).parent / "datasets" / "images"
        return base / photo.source.split(":", 1)[1]
    return Path(photo.source)


def available() -> bool:
    return all(photo_path(p).exists() for p in PHOTOS)


def upload_bytes(photo: Photo) -> bytes:
    """The photo as a camera would upload it: a JPEG (at most 2048 px, as the gateway sends to
    vision) keeping its EXIF."""
    from PIL import Image

    with Image.open(photo_path(photo)) as im:
        exif = im.info.get("exif", b"")
        rgb = im.convert("RGB")
    rgb.thumbnail((2048, 2048), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=92, exif=exif)
    return out.getvalue()


def load_analysis() -> dict[str, dict]:
    """Photo key -> {"labels": [[name, probability, class_index, synonyms], ...], "ocr_text",
    "exif"}."""
    return json.loads(ANALYSIS.read_text(encoding="utf-8"))["photos"]


# ---- metrics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quality:
    p_at_1: float
    ndcg_at_10: float
    empty_share: float
    failures: list[str]  # queries whose first hit is not relevant


def evaluate(search: Callable[[str], Sequence[str]]) -> Quality:
    """P@1, nDCG@10 (binary relevance) and the share of queries with no hit, over QUERIES.
    `search` returns photo keys, best first."""
    names = {p.key for p in PHOTOS}
    p1, ndcg, empty, failures = 0.0, 0.0, 0, []
    for query, relevant, _kind in QUERIES:
        assert set(relevant) <= names, query
        hits = list(search(query))[:10]
        if not hits:
            empty += 1
        if hits and hits[0] in relevant:
            p1 += 1
        else:
            failures.append(f"{query!r} -> {hits[:3]}")
        dcg = sum(1 / math.log2(i + 2) for i, key in enumerate(hits) if key in relevant)
        ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
        ndcg += dcg / ideal
    n = len(QUERIES)
    return Quality(p1 / n, ndcg / n, empty / n, failures)


# ---- the index under test ----------------------------------------------------------------------

BEFORE, AFTER = "before", "after"


def documents(analysis: dict[str, dict], mode: str = AFTER) -> list:
    """The search documents of the photos, as the gateway builds them. BEFORE is what was indexed
    before this work: the top 5 labels and no EXIF fields."""
    from search_service.document import Document, Label
    from search_service.exif import typed_fields

    names = neutral_names()
    docs = []
    for key in sorted(names, key=names.__getitem__):
        found = analysis[key]
        labels = [Label(n, p, tuple(syn), c) for n, p, c, syn in found["labels"]]
        taken, make, model = typed_fields(found["exif"])
        colours = tuple((name, share) for name, share in found.get("colours", ()))
        if mode == BEFORE:
            labels, taken, make, model, colours = labels[:5], 0, "", "", ()
        docs.append(
            Document(
                image_id=key,
                filename=names[key],
                owner="eval",
                labels=tuple(labels),
                ocr_text=found["ocr_text"],
                taken_at_unix_s=taken,
                camera_make=make,
                camera_model=model,
                colours=colours,
            )
        )
    return docs


def engine_params(mode: str = AFTER):  # -> EngineParams
    """The ranking of `mode`: AFTER is the service's default; BEFORE turns off the hierarchy,
    score fusion and the closest-concepts fallback (reciprocal rank fusion, weight 1)."""
    from search_service.engine import EngineParams
    from search_service.inverted_index import BM25Params

    if mode == AFTER:
        return EngineParams(vector_dim=1280)
    return EngineParams(
        vector_dim=1280,
        bm25=BM25Params(hierarchy=False),
        fusion="rrf",
        semantic_weight=1.0,
        semantic_min_similarity=0.65,
        closest_count=0,
        dates_skip_semantic=False,
        translate=False,
    )


def build_index(
    analysis: dict[str, dict], mode: str, label_names=None, embeddings=None, embed=None
):
    """A SearchIndex of the evaluation photos; with label embeddings and an embedder (the vision
    service's), semantic expansion as the service runs it."""
    from search_service.engine import SearchIndex
    from search_service.semantic import ConceptSpace

    index = SearchIndex(engine_params(mode))
    index.extend(documents(analysis, mode))
    if embed is not None:
        index.attach_semantic(ConceptSpace(label_names, embeddings), embed)
    return index


def search_keys(index) -> Callable[[str], list[str]]:
    def run(query: str) -> list[str]:
        return [hit.image_id for hit in index.search(query, limit=10).hits]

    return run


# ---- building the cached analysis ---------------------------------------------------------------


def analyse_all(analyze: Callable[[bytes], tuple[list, str]], keys: Sequence[str] = ()) -> dict:
    """Run `analyze` (bytes -> (labels, ocr_text)) on the photos; EXIF as storage summarises it."""
    from PIL import Image

    from storage_service.columnstore.image_check import exif_summary
    from vision_service.models.colours import dominant_colours

    out = {}
    for photo in PHOTOS:
        if keys and photo.key not in keys:
            continue
        data = upload_bytes(photo)
        with Image.open(io.BytesIO(data)) as im:
            exif = exif_summary(im)
            colours = [[c.name, c.share] for c in dominant_colours(im)]
        labels, ocr_text = analyze(data)
        out[photo.key] = {"labels": labels, "ocr_text": ocr_text, "exif": exif, "colours": colours}
    return out


def vision_analyzer(stub: object, labels_only: bool = False) -> Callable[[bytes], tuple[list, str]]:
    """Analyze through a VisionService stub, asking for TOP_K labels like the gateway."""
    from imagerepo.vision.v1 import vision_service_pb2 as vision_pb

    tasks = [vision_pb.ANALYSIS_TASK_LABELS] if labels_only else []

    def analyze(data: bytes) -> tuple[list, str]:
        request = vision_pb.AnalyzeRequest(image_data=data, top_k=TOP_K, tasks=tasks)
        reply = stub.Analyze(request, timeout=300)  # type: ignore[attr-defined]
        labels = [
            [lb.name, round(lb.probability, 5), lb.class_index, list(lb.synonyms)]
            for lb in reply.labels
        ]
        return labels, reply.ocr_text

    return analyze


def main() -> None:
    import grpc

    from imagerepo.vision.v1 import vision_service_pb2_grpc as vision_grpc
    from tests.conftest import REPO_ROOT
    from vision_service.config import VisionConfig
    from vision_service.server import build_server

    if not available():
        raise SystemExit("photos missing: apt-get install -y mate-backgrounds lomiri-wallpapers-*")
    server, port, health = build_server(
        "127.0.0.1:0", VisionConfig(models_dir=REPO_ROOT / "models")
    )
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            photos = analyse_all(vision_analyzer(vision_grpc.VisionServiceStub(channel)))
    finally:
        server.stop(grace=None)
    ANALYSIS.write_text(
        json.dumps({"about": "made by tests/search_service/eval_set.py", "photos": photos}) + "\n",
        encoding="utf-8",
    )
    print(f"{ANALYSIS}: {len(photos)} photos")


if __name__ == "__main__":
    main()
