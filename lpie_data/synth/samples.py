"""Built-in sample photos: real colour photographs shipped inside scikit-image.

They are read straight from the installed ``skimage/data`` folder (never downloaded). Only
natural photographs are listed: no test charts, no near-duplicates (the right view of the
motorcycle stereo pair would leak between splits), no grey or microscopy images.
"""

from __future__ import annotations

from pathlib import Path

from lpie_data.errors import DataError

SAMPLE_PHOTO_FILES: dict[str, str] = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "motorcycle": "motorcycle_left.png",
    "rocket": "rocket.jpg",
}


def sample_folder() -> Path:
    """The folder of scikit-image's bundled data files."""
    try:
        import skimage.data
    except ImportError:
        raise DataError(
            "the built-in sample photos need scikit-image (pip install scikit-image)"
        ) from None
    return Path(skimage.data.__file__).parent


def sample_photo_files() -> dict[str, Path]:
    """{name: path} of the built-in sample photos (8-bit sRGB); DataError if one is missing."""
    folder = sample_folder()
    photos = {name: folder / file for name, file in SAMPLE_PHOTO_FILES.items()}
    missing = [str(p) for p in photos.values() if not p.is_file()]
    if missing:
        raise DataError(f"built-in sample photos missing from scikit-image: {', '.join(missing)}")
    return photos
