"""Dataset statistics (fertools.stats), the Photo page's sample pictures and photo decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fertools import stats
from fertools.constants import FER2013_CLASSES
from fertools.data import Dataset
from fertools.faces import HaarFaceDetector, photo_detector
from fertools.preprocess import load_photo
from fertools.samples import PHOTO_SHAPE, sample_crop, sample_photo


def _dataset(labels: list[int], split: list[str], classes=("a", "b", "c")) -> Dataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(len(labels), 48, 48), dtype=np.uint8)
    return Dataset(images, np.array(labels, dtype=np.int64), np.array(split, dtype="<U5"), tuple(classes))


# --- class counts ------------------------------------------------------------------------------


def test_class_counts_match_dataset_counts(tiny_builtin):
    counts = stats.class_counts(tiny_builtin)
    assert counts.splits == ("train", "val", "test")
    assert counts.counts.shape == (3, 7)
    for row, split in enumerate(counts.splits):
        assert counts.counts[row].tolist() == list(tiny_builtin.counts()[split].values())
    assert counts.totals.tolist() == [20] * 7
    assert counts.split_sizes == {"train": 112, "val": 14, "test": 14}


def test_class_counts_keep_empty_classes():
    counts = stats.class_counts(_dataset([0, 0, 2], ["train", "train", "val"]))
    assert counts.counts.tolist() == [[2, 0, 0], [0, 0, 1]]
    assert counts.imbalance().smallest == "b"
    assert counts.imbalance().ratio == float("inf")


def test_imbalance_uses_train_split_like_fer2013():
    # FER2013's training split: disgust 436 vs happy 7,215.
    train = np.array([3995, 436, 4097, 7215, 4830, 3171, 4965])
    test = np.array([958, 111, 1024, 1774, 1247, 831, 1233])
    counts = stats.ClassCounts(FER2013_CLASSES, ("train", "test"), np.stack([train, test]))
    imbalance = counts.imbalance()
    assert (imbalance.largest, imbalance.largest_count) == ("happy", 7215)
    assert (imbalance.smallest, imbalance.smallest_count) == ("disgust", 436)
    assert imbalance.ratio == pytest.approx(16.55, abs=0.01)
    assert counts.imbalance("test").smallest_count == 111


def test_rows_are_long_form_with_shares():
    rows = stats.class_counts(_dataset([0, 1, 1, 2], ["train"] * 4)).rows()
    assert [(r["class"], r["count"]) for r in rows] == [("a", 1), ("b", 2), ("c", 1)]
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)


def test_imbalance_of_empty_dataset_is_none():
    assert stats.class_counts(_dataset([], [])).imbalance() is None


# --- pixels and mean faces ---------------------------------------------------------------------


def test_pixel_histograms_match_numpy(monkeypatch):
    monkeypatch.setattr(stats, "_CHUNK", 3)  # several chunks per group
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(10, 48, 48), dtype=np.uint8)
    groups = np.array([0, 1, 0, 0, 1, 0, 0, 1, 0, 0])
    edges, fractions = stats.pixel_histograms(images, groups, 3, bins=16)
    assert edges.shape == (17,) and edges[0] == 0 and edges[-1] == 256
    expected, _ = np.histogram(images[groups == 1], bins=16, range=(0, 256))
    np.testing.assert_allclose(fractions[1], expected / expected.sum())
    np.testing.assert_allclose(fractions[:2].sum(axis=1), 1.0)
    assert not fractions[2].any()  # empty group


def test_pixel_histogram_of_constant_faces_is_one_bin():
    images = np.full((4, 48, 48), 200, dtype=np.uint8)
    _, fractions = stats.pixel_histograms(images, np.zeros(4, dtype=np.int64), 1, bins=32)
    assert fractions[0, 200 // 8] == 1.0


@pytest.mark.parametrize("bins", [0, 3, 300])
def test_pixel_histograms_reject_bad_bins(bins):
    with pytest.raises(ValueError, match="bins"):
        stats.pixel_histograms(np.zeros((1, 48, 48), np.uint8), np.zeros(1, np.int64), 1, bins=bins)


def test_pixel_mean_std_match_numpy(monkeypatch):
    monkeypatch.setattr(stats, "_CHUNK", 4)
    images = np.random.default_rng(2).integers(0, 256, size=(9, 48, 48), dtype=np.uint8)
    mean, std = stats.pixel_mean_std(images)
    assert mean == pytest.approx(images.mean()) and std == pytest.approx(images.std())
    assert stats.pixel_mean_std(images[:0]) == (0.0, 0.0)


def test_mean_faces_match_numpy(monkeypatch):
    monkeypatch.setattr(stats, "_CHUNK", 2)
    dataset = _dataset([0, 0, 0, 2, 2], ["train"] * 5)
    means, counts = stats.mean_faces(dataset.images, dataset.labels, 3)
    assert means.dtype == np.float32 and means.shape == (3, 48, 48)
    assert counts.tolist() == [3, 0, 2]
    np.testing.assert_allclose(means[0], dataset.images[:3].mean(axis=0), rtol=1e-6)
    assert not means[1].any()


def test_difference_faces_are_mid_grey_without_differences():
    means = np.full((3, 48, 48), 90.0, dtype=np.float32)
    pictures = stats.difference_faces(means, np.array([5, 0, 2]))
    assert pictures.dtype == np.uint8 and (pictures == 128).all()


def test_difference_faces_stretch_the_largest_change():
    means = np.zeros((2, 48, 48), dtype=np.float32)
    means[0, 0, 0] = 10.0  # class 0 is brighter in one corner
    pictures = stats.difference_faces(means, np.array([1, 1]))
    assert pictures[0, 0, 0] == 255 and pictures[1, 0, 0] == 1
    assert pictures[0, 5, 5] == 128


# --- samples and pictures ----------------------------------------------------------------------


def test_sample_pages_cover_a_class_once_in_seeded_order():
    labels = np.array([0, 1] * 25)
    pages = [stats.sample_page(labels, 1, page, 7, seed=3) for page in range(4)]
    assert all(count == 4 for _, count in pages)
    seen = np.concatenate([rows for rows, _ in pages])
    assert sorted(seen.tolist()) == list(range(1, 50, 2))
    again, _ = stats.sample_page(labels, 1, 0, 7, seed=3)
    other, _ = stats.sample_page(labels, 1, 0, 7, seed=4)
    assert again.tolist() == pages[0][0].tolist()
    assert other.tolist() != again.tolist()


def test_sample_page_clamps_masks_and_takes_every_class():
    labels = np.array([0, 0, 1, 1, 2])
    rows, pages = stats.sample_page(labels, 0, 99, 1)
    assert pages == 2 and len(rows) == 1  # clamped to the last page
    mask = np.array([True, False, True, True, True])
    rows, _ = stats.sample_page(labels, 0, 0, 10, mask=mask)
    assert rows.tolist() == [0]
    rows, pages = stats.sample_page(labels, None, 0, 10)
    assert sorted(rows.tolist()) == [0, 1, 2, 3, 4] and pages == 1
    rows, pages = stats.sample_page(labels, 5, 0, 10)
    assert len(rows) == 0 and pages == 1
    with pytest.raises(ValueError):
        stats.sample_page(labels, 0, 0, 0)


def test_upscale_repeats_pixels():
    face = np.array([[0, 255], [10, 20]], dtype=np.uint8)
    big = stats.upscale(face, 3)
    assert big.shape == (6, 6) and big.dtype == np.uint8
    assert (big[:3, 3:] == 255).all() and (big[3:, :3] == 10).all()


def test_montage_tiles_row_by_row():
    faces = np.stack([np.full((48, 48), value, np.uint8) for value in (0, 50, 100)])
    sheet = stats.montage(faces, columns=2, scale=2, pad=2)
    assert sheet.shape == (2 * 96 + 3 * 2, 2 * 96 + 3 * 2)
    assert sheet[2, 2] == 0 and sheet[2, 100] == 50 and sheet[100, 2] == 100
    assert sheet[150, 150] == 255  # the empty cell
    assert stats.montage(faces[:0], 4).shape == (0, 0)


def test_beside_keeps_rows_aligned():
    originals = np.zeros((3, 48, 48), np.uint8)
    variants = np.full((3, 4, 48, 48), 7, np.uint8)
    sheet = stats.beside(originals, variants, scale=1, pad=1)
    assert sheet.shape == (3 * 48 + 4, 6 * 48 + 7)
    assert sheet[1, 1] == 0 and sheet[1, 50] == 255 and sheet[1, 99] == 7


# --- sample pictures for the Photo page --------------------------------------------------------


@pytest.mark.parametrize("emotion", FER2013_CLASSES)
def test_sample_photo_has_one_face_the_detector_finds(emotion):
    photo = sample_photo(emotion, seed=0)
    assert photo.shape == (*PHOTO_SHAPE, 3) and photo.dtype == np.uint8
    np.testing.assert_array_equal(photo, sample_photo(emotion, seed=0))
    assert len(photo_detector().detect(photo)) == 1


def test_sample_crop_is_too_small_for_the_detector():
    crop = sample_crop("happy", seed=1)
    assert crop.shape == (48, 48, 3) and crop.dtype == np.uint8
    assert HaarFaceDetector().detect(crop) == []


def test_samples_reject_unknown_emotions():
    with pytest.raises(ValueError, match="unknown emotion"):
        sample_photo("bored")


# --- decoding uploaded photos ------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_load_photo_honours_exif_orientation():
    image = Image.new("RGB", (300, 200), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 150, 200))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    frame = load_photo(_encode(image, "JPEG", exif=exif.tobytes()))
    assert frame.shape == (300, 200, 3)  # now upright: portrait
    assert frame[5, 100, 2] > 200 and frame[5, 100, 0] < 50  # red on top, in BGR
    assert frame[295, 100, 0] > 200  # blue at the bottom


def test_load_photo_shrinks_large_pictures_and_flattens_transparency():
    frame = load_photo(_encode(Image.new("RGBA", (2560, 1600), (0, 0, 0, 0)), "PNG"))
    assert frame.shape == (800, 1280, 3)
    assert (frame == 255).all()  # transparent becomes white, not black
    frame = load_photo(_encode(Image.new("L", (100, 60), 30), "WEBP"), max_side=50)
    assert frame.shape == (30, 50, 3)


def test_load_photo_rejects_non_images():
    with pytest.raises(ValueError, match="not an image"):
        load_photo(b"emotion,pixels\n0,1 2 3\n")
