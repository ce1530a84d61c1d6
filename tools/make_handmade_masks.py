"""Hand-made foreground masks of three bundled sample images (assets/images), for measuring
co-segmentation with and without refinement (`dinoscope eval-coseg`). The polygons were traced by
eye over a 50-pixel grid drawn on each photo; they follow the animal's outline to within a few
pixels, which bounds how much a Jaccard difference below ~0.02 means.

    python tools/make_handmade_masks.py   # writes tests/fixtures/coseg_masks/<stem>.png (255 = object)
Needs Pillow.
"""
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "coseg_masks"

POLYGONS = {
    # The tabby lying on the floor, tail to front paws.
    "cat_amir.jpg": [
        (112, 214), (140, 216), (165, 222), (190, 203), (230, 182), (270, 168), (330, 160),
        (380, 156), (420, 155), (430, 150), (425, 110), (425, 93), (440, 100), (455, 115),
        (470, 118), (490, 110), (522, 80), (521, 110), (520, 150), (518, 200), (522, 235),
        (550, 240), (565, 245), (560, 252), (530, 252), (505, 248), (545, 285), (545, 295),
        (525, 298), (500, 292), (460, 280), (420, 270), (390, 266), (330, 257), (290, 254),
        (250, 251), (215, 245), (190, 258), (175, 268), (162, 262), (168, 252), (150, 250),
        (120, 262), (90, 272), (75, 268), (80, 255), (110, 250), (140, 240), (160, 232),
        (150, 226), (120, 222),
    ],
    # The cat beside the guitar neck, ears to tail.
    "guitar_cat.jpg": [
        (180, 32), (195, 60), (210, 75), (240, 85), (275, 85), (302, 75), (295, 100),
        (285, 130), (300, 140), (340, 145), (380, 160), (420, 180), (440, 200), (470, 225),
        (485, 240), (470, 250), (455, 265), (450, 300), (440, 325), (420, 335), (380, 335),
        (340, 340), (320, 335), (300, 330), (280, 345), (260, 360), (220, 362), (150, 355),
        (110, 340), (100, 320), (100, 250), (105, 200), (120, 170), (145, 150), (150, 120),
        (155, 95), (165, 60),
    ],
    # The drawing fills a square pasted on black.
    "cartoon_cat.png": [(165, 118), (254, 118), (254, 219), (165, 219)],
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, polygon in POLYGONS.items():
        size = Image.open(ROOT / "assets" / "images" / name).size
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).polygon(polygon, fill=255)
        mask.save(OUT / (Path(name).stem + ".png"), optimize=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
