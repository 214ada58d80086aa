"""A synthetic, dermoscopy-like dataset in the exact HAM10000 (Kaggle) layout.

It exists so that every step runs with no download. It is labelled synthetic in its
metadata (`dataset` = "synthetic_demo" on every row), in a README beside the images, and
by everything that reads it. Classes differ in colour, border irregularity, texture and
size, with per-lesion variation wide enough that mel, nv and bkl overlap: melanomas are a
little darker, larger and more irregular than naevi, not a different colour, so that a
loss that weighs melanoma more buys melanoma recall with naevus recall, as on HAM10000.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core.data.metadata import SYNTHETIC_DATASET
from core.data.parallel import parallel_map
from core.labels import CLASSES

WIDTH, HEIGHT = 600, 450
SCALE = 2  # drawn at half size, then upsampled: 4x faster, and the dermoscope blur is real anyway
W, H = WIDTH // SCALE, HEIGHT // SCALE
# HAM10000 image counts, so class frequencies (and the imbalance) follow the real data.
HAM_COUNTS = {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142}
PARTS = ("HAM10000_images_part_1", "HAM10000_images_part_2")  # the Kaggle layout
MIN_LESIONS_PER_CLASS = 16  # enough for every class to reach every split
GENERATOR = 2  # bumped whenever the images a seed draws change: an older demo folder is rebuilt


@dataclass(frozen=True)
class Look:
    """How a class tends to look; each lesion draws around these values."""

    rgb: tuple[float, float, float]  # mean lesion colour, 0..1
    colour_spread: float  # lesion-to-lesion colour variation
    radius: float  # mean radius as a fraction of the image height
    irregularity: float  # border wobble amplitude
    mottling: float  # within-lesion colour variation (multi-colour, regression areas)
    dots: float  # density of dark dots / globules
    vessels: float  # density of red linear vessels
    age: float


LOOKS = {
    "akiec": Look((0.72, 0.42, 0.38), 0.07, 0.24, 0.10, 0.10, 0.1, 0.4, 70),
    "bcc": Look((0.70, 0.50, 0.48), 0.07, 0.22, 0.08, 0.10, 0.3, 1.0, 67),
    "bkl": Look((0.50, 0.36, 0.25), 0.08, 0.27, 0.10, 0.14, 0.2, 0.0, 59),
    "df": Look((0.55, 0.38, 0.30), 0.05, 0.13, 0.04, 0.06, 0.0, 0.0, 52),
    "mel": Look((0.38, 0.27, 0.21), 0.08, 0.26, 0.11, 0.15, 0.5, 0.1, 60),
    "nv": Look((0.42, 0.29, 0.21), 0.08, 0.22, 0.07, 0.09, 0.4, 0.0, 45),
    "vasc": Look((0.62, 0.18, 0.30), 0.06, 0.16, 0.07, 0.10, 0.0, 0.5, 50),
}
DX_TYPES = {"histo": 0.53, "follow_up": 0.37, "consensus": 0.09, "confocal": 0.01}
SITES = ("back", "lower extremity", "trunk", "upper extremity", "abdomen", "face", "chest", "foot", "neck", "scalp")


def class_counts(n: int) -> dict[str, int]:
    """Images per class: HAM10000 frequencies scaled to n, each class above a floor."""
    total = sum(HAM_COUNTS.values())
    floor = int(MIN_LESIONS_PER_CLASS * 1.35)
    return {c: max(floor, round(n * HAM_COUNTS[c] / total)) for c in CLASSES}


def make_demo_dataset(out: str | Path, n: int = 1500, seed: int = 0, masks: bool = False) -> pd.DataFrame:
    """Write about `n` images, HAM10000_metadata.csv and (optionally) lesion masks under `out`."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    for part in PARTS:
        (out / part).mkdir(parents=True, exist_ok=True)
    if masks:
        (out / "masks").mkdir(exist_ok=True)

    # Plan every lesion first (class, id, photos, its own seed), then draw them in parallel:
    # the output depends on the seed alone, not on the number of workers.
    plan, next_id = [], 0
    for dx, count in class_counts(n).items():
        made = 0
        while made < count:
            photos = min(count - made, 1 + int(rng.poisson(0.35)))
            plan.append((dx, f"SYNL_{len(plan):07d}", next_id, photos, int(rng.integers(2**63)), out, masks))
            made += photos
            next_id += photos
    rows = [row for lesion_rows in parallel_map(_write_lesion, plan, "demo") for row in lesion_rows]
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "HAM10000_metadata.csv", index=False)
    (out / "README_SYNTHETIC.txt").write_text(
        "SYNTHETIC demo data made by `python -m core.data demo` "
        f"(n={n}, seed={seed}).\nNot HAM10000 and not dermoscopy: no result on it says "
        "anything about skin lesions.\n"
    )
    (out / "demo.json").write_text(json.dumps({"synthetic": True, "generator": GENERATOR, "n": n, "seed": seed,
                                                "masks": masks}))
    return frame


def built_demo(out: str | Path) -> dict | None:
    """The demo.json of a demo dataset `make_demo_dataset` wrote at `out`, or None."""
    path = Path(out) / "demo.json"
    return json.loads(path.read_text()) if path.is_file() else None


def is_current_demo(out: str | Path, n: int, masks: bool) -> bool:
    """A demo dataset at `out` drawn by this generator, with `n` images and (if asked) masks."""
    built = built_demo(out)
    return bool(built) and built.get("generator") == GENERATOR and built["n"] == n and (built["masks"] or not masks)


def _write_lesion(task: tuple) -> list[dict]:
    dx, lesion_id, first_id, photos, seed, out, masks = task
    rng = np.random.default_rng(seed)
    lesion = _draw_lesion(dx, rng)
    rows = []
    for number in range(first_id, first_id + photos):
        image_id = f"SYN_{number:07d}"
        image, mask = _render(lesion, rng)
        Image.fromarray(image).save(out / PARTS[number % 2] / f"{image_id}.jpg", quality=92)
        if masks:
            Image.fromarray(mask).save(out / "masks" / f"{image_id}_segmentation.png")
        rows.append({"lesion_id": lesion_id, "image_id": image_id, "dx": dx, **lesion["meta"]})
    return rows


def _draw_lesion(dx: str, rng: np.random.Generator) -> dict:
    look = LOOKS[dx]
    harmonics = np.arange(2, 9)
    return {
        # Mostly lighter/darker, a little hue: brown lesions stay brown but overlap in tone.
        "rgb": np.clip(np.array(look.rgb) * np.exp(rng.normal(0, 2 * look.colour_spread))
                       + rng.normal(0, look.colour_spread / 3, 3), 0.05, 0.95),
        "radius": look.radius * np.exp(rng.normal(0, 0.22)),
        "wobble": rng.normal(0, look.irregularity, len(harmonics)) / np.sqrt(harmonics - 1),
        "phases": rng.uniform(0, 2 * np.pi, len(harmonics)),
        "mottling": look.mottling * rng.uniform(0.5, 1.5),
        "dots": look.dots * rng.uniform(0, 2),
        "vessels": look.vessels * rng.uniform(0, 2),
        "skin": np.clip(np.array([0.86, 0.66, 0.56]) + rng.normal(0, 0.05, 3), 0.3, 1.0),
        "meta": {
            "dx_type": str(rng.choice(list(DX_TYPES), p=list(DX_TYPES.values()))),
            "age": float(np.clip(round(rng.normal(look.age, 14) / 5) * 5, 0, 85)),
            "sex": str(rng.choice(["male", "female"])),
            "localization": str(rng.choice(SITES)),
            "dataset": SYNTHETIC_DATASET,
        },
    }


def _noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1] at the image size, from a coarse random grid."""
    coarse = rng.uniform(0, 255, (cells * 3 // 4 + 1, cells)).astype(np.uint8)
    smooth = Image.fromarray(coarse).resize((W, H), Image.BICUBIC)
    return np.asarray(smooth, dtype=np.float32) / 127.5 - 1


def _render(lesion: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One photo of a lesion: new framing, lighting and noise each time."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    cx, cy = W / 2 + rng.normal(0, 15), H / 2 + rng.normal(0, 12)
    angle = np.arctan2(y - cy, x - cx) + rng.uniform(0, 2 * np.pi)
    rho = np.hypot(x - cx, y - cy)
    k = np.arange(2, 2 + len(lesion["wobble"]))[:, None, None]
    wobble = (lesion["wobble"][:, None, None] * np.sin(k * angle + lesion["phases"][:, None, None])).sum(0)
    radius = lesion["radius"] * H * rng.uniform(0.92, 1.08) * (1 + wobble + 0.05 * _noise(rng, 8))
    inside = np.clip((radius - rho) / 3 + 0.5, 0, 1)  # soft edge, about 6 px wide at full size

    skin = lesion["skin"][None, None, :] * (1 + 0.04 * _noise(rng, 6)[..., None])
    colour = lesion["rgb"][None, None, :] * (1 + lesion["mottling"] * 1.5 * _noise(rng, 10)[..., None])
    network = np.sin(x / 3.5 + _noise(rng, 12) * 3) * np.sin(y / 3.5 + _noise(rng, 12) * 3)
    colour = colour * (1 - 0.12 * np.clip(network, 0, 1))[..., None]
    dots = rng.uniform(size=(H // 2, W // 2)) < lesion["dots"] * 0.016
    dots = np.asarray(Image.fromarray((dots * 255).astype(np.uint8)).resize((W, H), Image.BILINEAR),
                      dtype=np.float32) / 255
    colour = colour * (1 - 0.7 * np.clip(dots * 4, 0, 1))[..., None]
    vessels = np.exp(-(np.abs(_noise(rng, 14)) / 0.03) ** 2) * lesion["vessels"]
    colour = colour * (1 - 0.4 * vessels[..., None]) + 0.4 * vessels[..., None] * np.array([0.75, 0.1, 0.15])

    image = skin * (1 - inside[..., None]) + colour * inside[..., None]
    vignette = np.clip(1.25 - np.hypot((x - W / 2) / W, (y - H / 2) / H) * 1.1, 0, 1)
    image = image * vignette[..., None] * rng.uniform(0.85, 1.1)
    small = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    image = np.asarray(small.resize((WIDTH, HEIGHT), Image.BICUBIC), dtype=np.float32) / 255
    image = image + 0.015 * rng.standard_normal(image.shape, dtype=np.float32)  # sensor noise at full size
    mask = Image.fromarray((inside > 0.5).astype(np.uint8) * 255).resize((WIDTH, HEIGHT), Image.NEAREST)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), np.asarray(mask)
