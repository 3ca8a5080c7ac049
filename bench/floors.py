"""The floors of issue 13, as commands (run in a fresh process, like the commands they bound):

    python bench/floors.py decode ROOT            # imageio.v3.imread of every PNG under ROOT
    python bench/floors.py udc ROOT OUT BYTES     # np.load every .npy under ROOT, write BYTES
                                                  # bytes (the dataset's size) to OUT once
    python bench/floors.py fft PSF.npy N SIZE [THREADS]
                                                  # N 3-channel real-FFT convolutions of a
                                                  # SIZE x SIZE image at the padded size,
                                                  # PSF spectrum computed once beforehand,
                                                  # THREADS FFT threads (synth --jobs 1 uses
                                                  # all cores: the default)

Each does only what any implementation must: the per-pair difference between a whole and a half
tree (bench/perpair.py) is the floor a command is measured against.
"""

from __future__ import annotations

import sys
from pathlib import Path


def decode(root: Path) -> None:
    import imageio.v3 as iio

    for p in sorted(root.rglob("*")):
        if p.suffix.lower() == ".png":
            iio.imread(p)


def udc(root: Path, out: Path, nbytes: int) -> None:
    import numpy as np

    for p in sorted(root.rglob("*.npy")):
        np.load(p)
    out.mkdir(parents=True, exist_ok=True)
    block = bytes(8 << 20)
    with open(out / "bytes", "wb") as f:
        for start in range(0, nbytes, len(block)):
            f.write(block[: min(len(block), nbytes - start)])


def fft(psf_path: Path, n: int, size: int, workers: int) -> None:
    import numpy as np
    import scipy.fft

    kernel = np.load(psf_path).astype(np.float32)
    ph, pw = kernel.shape[:2]
    shape = tuple(scipy.fft.next_fast_len(size + p - 1, real=True) for p in (ph, pw))
    spectrum = scipy.fft.rfft2(kernel.transpose(2, 0, 1), s=shape, workers=workers)
    spectrum = spectrum.astype(np.complex64)
    rng = np.random.default_rng(0)
    image = rng.random((3, size + ph - 1, size + pw - 1), dtype=np.float32)
    for _ in range(n):
        freq = scipy.fft.rfft2(image, s=shape, workers=workers)
        freq *= spectrum
        full = scipy.fft.irfft2(freq, s=shape, workers=workers, overwrite_x=True)
        full[:, ph - 1 : ph - 1 + size, pw - 1 : pw - 1 + size].copy()


def main() -> None:
    what, *args = sys.argv[1:]
    if what == "decode":
        decode(Path(args[0]))
    elif what == "udc":
        udc(Path(args[0]), Path(args[1]), int(args[2]))
    elif what == "fft":
        import os

        threads = int(args[3]) if len(args) > 3 else os.cpu_count() or 1
        fft(Path(args[0]), int(args[1]), int(args[2]), threads)
    else:
        raise SystemExit(f"unknown floor {what!r}; valid: decode, udc, fft")


if __name__ == "__main__":
    main()
