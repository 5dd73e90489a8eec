"""Extract the 8x8 handwritten digits from scikit-learn's bundled copy into ``digits.npz``.

Run once from the repository root (needs scikit-learn; the loaders do not)::

    python datasets/make_digits.py

The output holds the raw images (uint8, 0..16), the labels (uint8) and the
fixed train/test split as index arrays, so the split never changes even if
scikit-learn's splitting code does.  See ``DIGITS_LICENSE.md`` for provenance.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

#: samples held out for testing (20 % of 1,797, as scikit-learn rounds it up)
N_TEST = 360
#: seed of the stratified split
SPLIT_SEED = 0


def stratified_split(labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train, test) indices, stratified by class, via scikit-learn."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(labels.shape[0])
    train, test = train_test_split(idx, test_size=n_test, stratify=labels, random_state=seed, shuffle=True)
    return np.sort(train).astype(np.int32), np.sort(test).astype(np.int32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).with_name("digits.npz"))
    args = parser.parse_args(argv)

    import sklearn
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images)
    if not np.array_equal(images, np.round(images)) or images.min() < 0 or images.max() > 16:
        raise SystemExit("unexpected pixel values in scikit-learn's digits; expected integers 0..16")
    images = images.astype(np.uint8)
    labels = np.asarray(bunch.target).astype(np.uint8)
    train_idx, test_idx = stratified_split(labels, N_TEST, SPLIT_SEED)

    np.savez_compressed(
        args.output,
        images=images,
        labels=labels,
        train_idx=train_idx,
        test_idx=test_idx,
        split_seed=np.int64(SPLIT_SEED),
        source=np.array(f"scikit-learn {sklearn.__version__} sklearn.datasets.load_digits (UCI optdigits test set)"),
    )
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    print(f"wrote {args.output}: images {images.shape} labels {labels.shape} "
          f"train {train_idx.size} test {test_idx.size} sha256(images+labels)={digest}")
    print("test samples per class:", np.bincount(labels[test_idx], minlength=10).tolist())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
