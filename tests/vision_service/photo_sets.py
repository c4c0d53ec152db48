"""Real-photo sets for the vision tests, the vision benchmark and the quantization script.

- `real_photos()`: every real photograph shipped in the installed packages (scikit-image,
  scikit-learn, matplotlib when installed), as upright RGB images, by name.
- `photo_variants()`: those photos plus crops and mirror images, to reach a few dozen inputs
  for calibration and agreement figures. `calibration_variants()` gives different crops, so a
  model is never judged on the exact inputs it was calibrated on.
- `text_photos()` / `textless_photos()`: photos that hold text (skimage's scanned page and
  handwritten text, and real photos carrying a sign: a rendered sign board pasted into the
  photo at the size a sign has in a snapshot; no package here ships a photograph of a real
  sign) and photos that hold none (the above and Debian's mate-backgrounds photographs when
  installed: `debian_photos()`). The text-likelihood probe is tuned and tested on these.
- `font_sign_photos()`: signs in the installed system fonts (DejaVu, Liberation: regular, bold,
  serif, condensed, mono), other words, colours and places, 4-10% of the photo's height:
  `tuning_font_signs()` to tune the text prefilter on, `heldout_font_signs()` (other words,
  fonts, colours, places and sizes on the same base photos) to check it on, never to tune.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

# Photographs (not drawings, charts or synthetic patterns) in skimage.data.
_SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "clock_motion.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
)
_SKIMAGE_TEXT = ("page.png", "text.png")
_SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
_MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)
# Debian's mate-backgrounds (installed by .ci/run): real photographs without any text (the
# OCR of tests/search_service/eval_analysis.json finds none in them).
_MATE_NATURE = Path("/usr/share/backgrounds/mate/nature")
_MATE_PHOTOS = (
    "Aqua.jpg",
    "Blinds.jpg",
    "Dune.jpg",
    "FreshFlower.jpg",
    "Garden.jpg",
    "GreenMeadow.jpg",
    "LadyBird.jpg",
    "RainDrops.jpg",
    "Storm.jpg",
    "TwoWings.jpg",
    "Wood.jpg",
    "YellowFlower.jpg",
)

# Words on the pasted signs, and where they go: (photo, text, height as a fraction of the
# photo's height, left and top as fractions, board colour, ink colour).
_SIGNS = (
    ("chelsea", "CAFE", 0.14, 0.05, 0.70, "white", "black"),
    ("coffee", "Espresso 2.50", 0.10, 0.40, 0.05, "black", "white"),
    ("china", "NO PARKING", 0.09, 0.30, 0.10, "white", "red"),
    ("motorcycle_left", "Garage open", 0.08, 0.05, 0.05, "yellow", "black"),
    ("rocket", "LAUNCH PAD 39A", 0.07, 0.20, 0.85, "white", "black"),
    ("camera", "EXIT", 0.10, 0.65, 0.15, "black", "white"),
    ("flower", "Garden shop", 0.10, 0.05, 0.80, "white", "darkgreen"),
    ("astronaut", "NASA", 0.08, 0.55, 0.05, "white", "navy"),
    ("grass", "Keep off the grass", 0.08, 0.10, 0.45, "white", "black"),
    ("brick", "Main Street", 0.09, 0.25, 0.40, "darkgreen", "white"),
)


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def _photo_files(names: tuple[str, ...], base: Path | None) -> dict[str, Path]:
    if base is None:
        return {}
    return {Path(n).stem: base / n for n in names if (base / n).is_file()}


def real_photos() -> dict[str, Image.Image]:
    """Every real photograph available offline, without text, as RGB, by name."""
    skimage_dir = _package_dir("skimage")
    sklearn_dir = _package_dir("sklearn")
    mpl_dir = _package_dir("matplotlib")
    files = {
        **_photo_files(_SKIMAGE_PHOTOS, skimage_dir / "data" if skimage_dir else None),
        **_photo_files(
            _SKLEARN_PHOTOS, sklearn_dir / "datasets" / "images" if sklearn_dir else None
        ),
        **_photo_files(
            _MATPLOTLIB_PHOTOS, mpl_dir / "mpl-data" / "sample_data" if mpl_dir else None
        ),
    }
    return {name: _open_rgb(path) for name, path in sorted(files.items())}


def debian_photos(max_side: int = 1024) -> dict[str, Image.Image]:
    """The mate-backgrounds photographs that are installed (none without the package), as
    RGB at most `max_side` on the long side (they ship at 2-5 MP)."""
    out = {}
    for name in _MATE_PHOTOS:
        path = _MATE_NATURE / name
        if not path.is_file():
            continue
        out[f"mate-{Path(name).stem.lower()}"] = photo_file(path, max_side)
    return out


def photo_file(path: Path, max_side: int = 1024) -> Image.Image:
    """A photograph file as upright RGB at most `max_side` on the long side (decoded at a
    reduced scale where JPEG allows: wallpapers ship at 2-5 MP)."""
    with Image.open(path) as im:
        im.draft("RGB", (max_side, max_side))
        image = ImageOps.exif_transpose(im).convert("RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return image


def _crops(name: str, image: Image.Image, boxes: tuple[tuple[float, float, float, float], ...]):
    w, h = image.size
    out = {}
    for i, (left, top, right, bottom) in enumerate(boxes):
        out[f"{name}-crop{i}"] = image.crop(
            (int(left * w), int(top * h), int(right * w), int(bottom * h))
        )
    return out


def photo_variants(photos: dict[str, Image.Image] | None = None) -> dict[str, Image.Image]:
    """Each photo, its mirror image and two off-centre crops (4 inputs per photo)."""
    photos = real_photos() if photos is None else photos
    out: dict[str, Image.Image] = {}
    for name, image in photos.items():
        out[name] = image
        out[f"{name}-mirror"] = ImageOps.mirror(image)
        out.update(_crops(name, image, ((0.0, 0.0, 0.8, 0.8), (0.2, 0.15, 1.0, 0.95))))
    return out


def calibration_variants(photos: dict[str, Image.Image] | None = None) -> dict[str, Image.Image]:
    """Inputs for calibrating a quantized model: crops other than `photo_variants`' ones, a
    flipped and a darker copy, so calibration and evaluation inputs differ."""
    photos = real_photos() if photos is None else photos
    out: dict[str, Image.Image] = {}
    for name, image in photos.items():
        out.update(_crops(name, image, ((0.1, 0.1, 0.9, 0.9), (0.0, 0.3, 0.7, 1.0))))
        out[f"{name}-flip"] = ImageOps.flip(image)
        out[f"{name}-dark"] = image.point(lambda v: int(v * 0.7))
    return out


def _sign(text: str, height: int, board: str, ink: str) -> Image.Image:
    font = ImageFont.load_default(size=max(8, int(height * 0.62)))
    left, top, right, bottom = font.getbbox(text)
    pad = max(2, height // 6)
    sign = Image.new("RGB", (right - left + 2 * pad, height), board)
    ImageDraw.Draw(sign).text(
        (pad - left, (height - (bottom - top)) // 2 - top), text, fill=ink, font=font
    )
    return sign


def text_photos() -> dict[str, Image.Image]:
    """Photos that hold text: skimage's scanned page and handwritten text, and real photos
    with a sign in them."""
    skimage_dir = _package_dir("skimage")
    if skimage_dir is None:
        raise FileNotFoundError("scikit-image is not installed")
    out = {Path(n).stem: _open_rgb(skimage_dir / "data" / n) for n in _SKIMAGE_TEXT}
    photos = real_photos()
    for name, text, height, left, top, board, ink in _SIGNS:
        photo = photos[name].copy()
        w, h = photo.size
        sign = _sign(text, max(12, int(h * height)), board, ink)
        x = min(int(left * w), max(0, w - sign.width))
        photo.paste(sign, (x, int(top * h)))
        out[f"{name}-sign"] = photo
    return out


def small_sign_photos(heights: tuple[float, ...] = (0.04, 0.05, 0.06)) -> dict[str, Image.Image]:
    """The same signs at smaller sizes (fractions of the photo's height), below what the probe
    is tuned to find every time: the benchmark reports how many a probe still finds."""
    photos = real_photos()
    out = {}
    for fraction in heights:
        for name, text, _, left, top, board, ink in _SIGNS:
            out[f"{name}-sign-{fraction:.2f}"] = _with_sign(
                photos[name], text, fraction, left, top, board, ink
            )
    return out


def _with_sign(
    photo: Image.Image, text: str, height: float, left: float, top: float, board: str, ink: str
) -> Image.Image:
    photo = photo.copy()
    w, h = photo.size
    sign = _sign(text, max(8, int(h * height)), board, ink)
    x = min(int(left * w), max(0, w - sign.width))
    photo.paste(sign, (x, int(top * h)))
    return photo


# System fonts for the font-varied signs (Debian's fonts-dejavu-core, -extra, fonts-liberation).
_FONT_DIR = Path("/usr/share/fonts/truetype")
_FONTS = (
    "dejavu/DejaVuSans-Bold.ttf",
    "liberation/LiberationSerif-Regular.ttf",
    "dejavu/DejaVuSerif.ttf",
    "liberation/LiberationSans-Regular.ttf",
    "dejavu/DejaVuSansCondensed.ttf",
    "liberation/LiberationMono-Bold.ttf",
)
_HELDOUT_FONTS = (
    *_FONTS,
    "dejavu/DejaVuSans.ttf",
    "liberation/LiberationSansNarrow-Regular.ttf",
)
_WORDS = (
    "OPEN",
    "Bus stop",
    "Hotel Central",
    "SALE 50%",
    "Platform 4",
    "Bakery",
    "Private road",
    "Welcome",
    "Pharmacy",
    "STOP",
    "Museum",
    "Exit 12",
)
_BOARDS = (
    ("white", "black"),
    ("black", "yellow"),
    ("navy", "white"),
    ("red", "white"),
    ("yellow", "black"),
    ("white", "darkred"),
)


def installed_fonts(fonts: tuple[str, ...] = _HELDOUT_FONTS) -> tuple[Path, ...]:
    """The font files of `fonts`, or none unless every one is installed (Debian's
    fonts-dejavu-core, fonts-dejavu-extra and fonts-liberation): with only some, the signs
    would differ from the measured sets."""
    paths = tuple(_FONT_DIR / f for f in fonts)
    return paths if all(p.is_file() for p in paths) else ()


def font_sign_photos(
    bases: dict[str, Image.Image],
    fonts: tuple[Path, ...],
    heights: tuple[float, ...],
    salt: int = 0,
) -> dict[str, Image.Image]:
    """Each base photo with a sign per height (a fraction of the photo's height); the font,
    word, colours and place cycle with the photo, the height and `salt`."""
    if not fonts:
        return {}
    out = {}
    for i, (name, photo) in enumerate(sorted(bases.items())):
        for j, fraction in enumerate(heights):
            k = i * len(heights) + j + salt
            word = _WORDS[k % len(_WORDS)]
            board, ink = _BOARDS[(k // 2) % len(_BOARDS)]
            image = photo.copy()
            w, h = image.size
            height = max(10, int(h * fraction))
            font = ImageFont.truetype(str(fonts[k % len(fonts)]), max(8, int(height * 0.62)))
            left, top, right, bottom = font.getbbox(word)
            pad = max(2, height // 6)
            sign = Image.new("RGB", (right - left + 2 * pad, height), board)
            ImageDraw.Draw(sign).text(
                (pad - left, (height - (bottom - top)) // 2 - top), word, fill=ink, font=font
            )
            x = min(int((k * 37) % 60 / 100 * w), max(0, w - sign.width))
            y = min(int(((k * 53) % 80 + 5) / 100 * h), h - height)
            image.paste(sign, (x, y))
            out[f"{name}-{word}-{fraction:.3f}"] = image
    return out


def tuning_font_signs() -> dict[str, Image.Image]:
    """Font-varied signs the text prefilter was tuned on: 5, 7 and 10% of the height on the
    mate-backgrounds photos, 5 and 8% on the package photos."""
    fonts = installed_fonts(_FONTS)
    return {
        **font_sign_photos(debian_photos(), fonts, (0.05, 0.07, 0.10)),
        **font_sign_photos(real_photos(), fonts, (0.05, 0.08), salt=1),
    }


def heldout_font_signs() -> dict[str, Image.Image]:
    """Signs the prefilter was NOT tuned on: other word, font, colour and place combinations
    (two more fonts) at 4, 4.5, 5.5 and 7% of the height, on the same base photos."""
    bases = {**debian_photos(), **real_photos()}
    return font_sign_photos(bases, installed_fonts(), (0.04, 0.045, 0.055, 0.07), salt=17)


def textless_photos() -> dict[str, Image.Image]:
    """Real photos without text, with their mirror images and crops, and the installed
    mate-backgrounds photos."""
    return {**photo_variants(), **debian_photos()}


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    """An image as the JPEG a camera or phone would upload."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def as_analysed(images: dict[str, Image.Image]) -> dict[str, Image.Image]:
    """The working copies the engine analyses: each image sent as JPEG and decoded at the
    reduced scale the service decodes at."""
    from vision_service.models.ocr import PROBE_MAX_SIDE
    from vision_service.preprocess import CLASSIFIER_RESIZE, decode_image

    return {
        name: decode_image(
            jpeg_bytes(image),
            max_pixels=40_000_000,
            min_long_side=PROBE_MAX_SIDE,
            min_short_side=CLASSIFIER_RESIZE,
        ).rgb
        for name, image in images.items()
    }


def model_inputs(images: dict[str, Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """The classifier and moderation input tensors the service makes from these images sent
    as JPEG: (float32[N,3,224,224], float32[N,224,224,3])."""
    from vision_service.models.moderation import moderation_input
    from vision_service.preprocess import classifier_input

    decoded = as_analysed(images).values()
    clf = [classifier_input(rgb) for rgb in decoded]
    mod = [moderation_input(rgb) for rgb in decoded]
    return np.stack(clf), np.stack(mod)
