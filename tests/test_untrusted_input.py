"""Untrusted input is bounded before it is decoded, and one image decoder serves every reader.

Each class of hostile or damaged file has one test with its exact outcome: a
:class:`DatasetError` (or :class:`ImageError`) whose one sentence names the limit and its
value. The bombs are generated here, in ``tmp_path``, and loaded in a child process whose
address space is capped (``RLIMIT_AS``), so a loader that allocated what a bomb declares
would die of ``MemoryError`` instead of passing. The decoder tests check that the Photo page
(:func:`load_photo`), ``predict`` (:func:`read_image_file`) and the dataset loader see the
same upright pixels, and that ordinary JPEGs decode to exactly what OpenCV gave before.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from fertools import cli, data, images, limits
from fertools.constants import PROJECT_ROOT
from fertools.data import DatasetError
from fertools.images import ImageError, ImageTooLarge, read_image_file
from fertools.limits import MiB, describe_bytes
from fertools.preprocess import load_photo, to_face, to_gray

#: The child's address space: ~0.5 GiB goes to Python, numpy, OpenCV and Pillow, so 2 GiB
#: leaves far less than any bomb here declares (3 GiB and more).
ADDRESS_SPACE = 2 << 30


# --- helpers ---------------------------------------------------------------------------------


def run_bounded(body: str) -> str:
    """Run ``body`` in a child whose address space is capped at ``ADDRESS_SPACE``; its stdout.

    The child must exit 0: a ``MemoryError`` or a traceback fails the test.
    """
    script = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))\n"
        + textwrap.dedent(body)
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def load_bounded(path: Path, *, as_upload: bool = False) -> str:
    """What ``data.load`` of ``path`` says in a bounded child: the refusal, or ``loaded N``."""
    source = f"open({str(path)!r}, 'rb').read(), name={path.name!r}" if as_upload else repr(str(path))
    return run_bounded(
        f"""
        from fertools import data
        try:
            dataset = data.load({source}, use_cache=False)
        except data.DatasetError as error:
            print(error)
        else:
            print("loaded", len(dataset))
        """
    )


def png_bytes(width: int, height: int, idat: bytes, *, bit_depth: int = 8, color_type: int = 0) -> bytes:
    """A PNG of the given header and compressed pixel data (which need not fill it)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def header_only_png(width: int, height: int) -> bytes:
    """A PNG declaring ``width`` x ``height`` gray pixels, with a tiny IDAT: enough for the header check."""
    return png_bytes(width, height, zlib.compress(bytes(64)))


def deflated_zeros(size: int) -> bytes:
    """Raw deflate data inflating to ``size`` zero bytes (a multiple of 1 MiB), in ~1 KB per MiB.

    Each MiB is one block after a full flush, which refers to nothing before it, so
    repeating it makes as long a stream as wanted without compressing gigabytes.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * (size // MiB) + compressor.flush(zlib.Z_FINISH)


def raw_zip(
    members: list[dict],
    *,
    declared_members: int | None = None,
    zip64: bool = False,
) -> bytes:
    """A zip written field by field, so its headers can say what a hostile one says.

    Each member is a dict with ``name`` and ``data`` (the stored bytes), and optional
    ``method`` (0 stored, 8 deflated), ``file_size`` and ``compress_size`` (default: the
    data's length), ``crc`` and ``flags``. ``declared_members`` is the end record's count.
    """
    body, directory = bytearray(), bytearray()
    for member in members:
        name = member["name"].encode()
        content = member["data"]
        method, flags, crc = member.get("method", 0), member.get("flags", 0), member.get("crc", 0)
        compressed = member.get("compress_size", len(content))
        size = member.get("file_size", len(content))
        offset = len(body)
        body += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 0, crc, compressed, size, len(name), 0
        )
        body += name + content
        directory += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            flags,
            method,
            0,
            0,
            crc,
            compressed,
            size,
            len(name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        directory += name
    count = len(members) if declared_members is None else declared_members
    out = bytes(body) + bytes(directory)
    if zip64:
        record_at = len(out)
        out += struct.pack(
            "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(directory), len(body)
        )
        out += struct.pack("<4sLQL", b"PK\x06\x07", 0, record_at, 1)
        count = 0xFFFF
    return out + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), len(body), 0)


def zip_of(files: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def npz_of(arrays: dict[str, bytes]) -> bytes:
    """An ``.npz`` of raw ``.npy`` member bytes (as :func:`npy_bytes` writes them)."""
    return zip_of({f"{key}.npy": content for key, content in arrays.items()})


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_header_only(shape: tuple[int, ...], descr: str) -> bytes:
    """An ``.npy`` header declaring ``shape`` of ``descr``, followed by almost no data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(16)


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def png_of(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def smooth_noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Face-like test pixels: noise blurred enough that JPEG keeps detail at every frequency."""
    noise = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 0)


def one_face_folder(root: Path, name: str, content: bytes) -> Path:
    (root / "happy").mkdir(parents=True)
    (root / "happy" / name).write_bytes(content)
    return root


# --- fertools.data and its decoder need no TensorFlow ------------------------------------------


def test_the_loaders_import_without_tensorflow():
    out = run_bounded(
        """
        import sys
        import fertools.data, fertools.images, fertools.limits, fertools.preprocess
        print("tensorflow" in sys.modules, "keras" in sys.modules)
        """
    )
    assert out == "False False"


def test_pillow_never_loads_truncated_images():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- zip bombs and damaged zips ------------------------------------------------------------------


def test_a_zip_member_declaring_3_gib_is_refused_before_it_is_inflated(tmp_path):
    """3 MB on disk, 3 GiB of zeros when inflated: the declared size is refused."""
    bomb = deflated_zeros(3 << 30)
    path = tmp_path / "bomb.zip"
    path.write_bytes(
        raw_zip([{"name": "train/happy/a.png", "data": bomb, "method": 8, "file_size": 3 << 30}])
    )
    assert path.stat().st_size < 4 * MiB

    assert load_bounded(path) == (
        f"{path}:train/happy/a.png declares 3,072 MiB uncompressed, above FER Lab's limit of 512 MiB for a zip."
    )
    assert load_bounded(path, as_upload=True) == (
        "bomb.zip:train/happy/a.png declares 3,072 MiB uncompressed, above FER Lab's limit of 512 MiB for a zip."
    )


def test_a_zip_member_lying_about_its_size_is_read_no_further_than_declared(tmp_path):
    """The directory says 1,000 bytes, the data inflates to 3 GiB: the read stops, the CRC fails."""
    bomb = deflated_zeros(3 << 30)
    path = tmp_path / "liar.zip"
    path.write_bytes(raw_zip([{"name": "train/happy/a.png", "data": bomb, "method": 8, "file_size": 1000}]))

    assert load_bounded(path) == (
        f"{path}:train/happy/a.png is damaged and cannot be read (Bad CRC-32 for file 'train/happy/a.png')."
    )


def test_a_member_inflating_more_than_the_ratio_limit_is_refused():
    content = zip_of({"train/happy/a.bmp": bytes(2 * MiB)}, zipfile.ZIP_DEFLATED)
    info = zipfile.ZipFile(io.BytesIO(content)).infolist()[0]
    ratio = info.file_size / info.compress_size

    with pytest.raises(DatasetError) as caught:
        data.load(content, name="ratio.zip")

    assert str(caught.value) == (
        f"ratio.zip:train/happy/a.bmp inflates {ratio:,.0f} times ({describe_bytes(info.compress_size)} to "
        f"2 MiB), above FER Lab's limit of {limits.MAX_COMPRESSION_RATIO}x for a zip member."
    )
    # Small members may compress far (a flat colour 48x48 BMP, ~130x): they are not held to the ratio.
    flat = cv2.imencode(".bmp", np.full((48, 48, 3), 7, np.uint8))[1].tobytes()
    dataset = data.load(zip_of({"happy/flat.bmp": flat}, zipfile.ZIP_DEFLATED), name="flat.zip")
    assert len(dataset) == 1 and int(dataset.images[0, 0, 0]) == 7


def test_members_declaring_more_than_the_total_limit_are_refused():
    size = 300 * MiB  # each within the per-member bounds, together over the total
    members = [
        {"name": f"train/happy/{i}.png", "data": b"", "file_size": size, "compress_size": size}
        for i in range(2)
    ]
    with pytest.raises(DatasetError) as caught:
        data.load(raw_zip(members), name="total.zip")
    assert str(caught.value) == (
        "total.zip declares 600 MiB uncompressed in all, above FER Lab's limit of 512 MiB for a zip."
    )


def test_an_image_member_declaring_more_than_the_image_file_limit_is_refused():
    size = 100 * MiB
    members = [{"name": "train/happy/big.jpg", "data": b"", "file_size": size, "compress_size": size}]
    with pytest.raises(DatasetError) as caught:
        data.load(raw_zip(members), name="big.zip")
    assert str(caught.value) == (
        "big.zip:train/happy/big.jpg declares 100 MiB uncompressed, above FER Lab's limit of 64 MiB "
        "for one image file."
    )


def test_a_csv_member_declaring_more_than_the_upload_limit_is_refused():
    size = 450 * MiB
    members = [{"name": "fer2013.csv", "data": b"", "file_size": size, "compress_size": size}]
    with pytest.raises(DatasetError) as caught:
        data.load(raw_zip(members), name="csv.zip")
    assert str(caught.value) == (
        "csv.zip:fer2013.csv declares 450 MiB uncompressed, above FER Lab's limit of 400 MiB for a CSV."
    )


def test_a_zip_declaring_too_many_members_is_refused_before_it_is_opened(tmp_path):
    """200,001 entries (a zip64 end record): refused on the count, before zipfile lists them."""
    members = [{"name": f"{i}", "data": b""} for i in range(limits.MAX_ZIP_MEMBERS + 1)]
    honest, lying = tmp_path / "many.zip", tmp_path / "lying.zip"
    honest.write_bytes(raw_zip(members, zip64=True))
    # The same entries under an end record that counts one: zipfile lists them all, then the count is checked.
    lying.write_bytes(raw_zip(members, declared_members=1))

    assert (
        load_bounded(honest)
        == f"{honest} declares 200,001 members, above FER Lab's limit of 200,000 for a zip."
    )
    assert (
        load_bounded(lying) == f"{lying} holds 200,001 members, above FER Lab's limit of 200,000 for a zip."
    )


def test_a_zip_declaring_a_huge_directory_is_refused_before_it_is_opened():
    end_record = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, 17 * MiB, 0, 0)
    with pytest.raises(DatasetError) as caught:
        data.load(end_record, name="directory.zip")
    assert str(caught.value) == (
        "directory.zip declares a directory of 17 MiB, above FER Lab's limit of 16 MiB for a zip."
    )


def test_an_encrypted_member_is_refused():
    members = [{"name": "train/happy/a.png", "data": bytes(40), "flags": 0x1}]
    with pytest.raises(DatasetError) as caught:
        data.load(raw_zip(members), name="secret.zip")
    assert (
        str(caught.value)
        == "secret.zip:train/happy/a.png is encrypted; FER Lab reads zips made without a password."
    )


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 99])
def test_a_member_compressed_otherwise_than_stored_or_deflated_is_refused(method):
    if method == 99:  # unknown to zipfile too (AES): it would raise NotImplementedError on reading
        content = raw_zip([{"name": "happy/a.png", "data": bytes(10), "method": 99}])
    else:
        content = zip_of({"happy/a.png": header_only_png(48, 48)}, method)
    with pytest.raises(DatasetError) as caught:
        data.load(content, name="odd.zip")
    assert str(caught.value) == (
        f"odd.zip:happy/a.png uses zip compression method {method}, which FER Lab does not read; "
        "make the zip again with the usual deflate compression."
    )


def test_a_member_with_a_bad_crc_is_refused():
    face = cv2.imencode(".png", smooth_noise((48, 48), 1))[1].tobytes()
    content = bytearray(zip_of({"happy/a.png": face, "happy/b.png": face}))
    content[content.index(face) + 100] ^= 0xFF  # damage the first member's stored bytes
    with pytest.raises(DatasetError) as caught:
        data.load(bytes(content), name="crc.zip")
    assert (
        str(caught.value)
        == "crc.zip:happy/a.png is damaged and cannot be read (Bad CRC-32 for file 'happy/a.png')."
    )


def test_damaged_deflate_data_is_refused():
    face = cv2.imencode(".bmp", smooth_noise((48, 48), 2))[1].tobytes()
    member = {"name": "happy/a.bmp", "data": b"\xff" * 200, "method": 8, "file_size": len(face)}
    with pytest.raises(DatasetError) as caught:
        data.load(raw_zip([member]), name="deflate.zip")
    assert str(caught.value).startswith("deflate.zip:happy/a.bmp is damaged and cannot be read (Error -3 ")


def test_a_truncated_zip_is_refused():
    content = zip_of({"happy/a.png": cv2.imencode(".png", smooth_noise((48, 48), 3))[1].tobytes()})
    with pytest.raises(DatasetError) as caught:
        data.load(content[: len(content) // 2], name="half.zip")
    assert str(caught.value) == f"half.zip is not a readable zip file; expected {data.FORMATS_HELP}."


def test_an_upload_over_the_upload_limit_is_refused(monkeypatch):
    monkeypatch.setattr(limits, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(DatasetError) as caught:
        data.load(b"0" * 1001, name="big.csv")
    assert str(caught.value) == "big.csv is 1,001 bytes, above FER Lab's limit of 1,000 bytes for an upload."


# --- image bombs ----------------------------------------------------------------------------------


def test_a_30000x30000_png_in_a_zip_is_refused_before_it_is_decoded(tmp_path):
    """A complete 1-bit PNG: 113 KB of zip, 900 MB decoded as gray, 2.7 GB as BGR."""
    row = bytes(1 + 30000 // 8 + 1)  # filter byte, then 3,751 bytes of 1-bit pixels
    compressor = zlib.compressobj(6)
    idat = b"".join(compressor.compress(row * 1000) for _ in range(30)) + compressor.flush()
    bomb = png_bytes(30000, 30000, idat, bit_depth=1)
    path = tmp_path / "bomb.zip"
    path.write_bytes(zip_of({"train/happy/bomb.png": bomb, "train/sad/ok.png": header_only_png(48, 48)}))

    assert load_bounded(path) == (
        f"{path}:train/happy/bomb.png has more than 50,000,000 pixels, FER Lab's limit for one image."
    )


def test_an_image_over_the_pixel_limit_is_refused_with_its_size_everywhere(tmp_path):
    bomb = header_only_png(8000, 8000)  # 64 megapixels: under Pillow's own bomb check, over ours
    expected = "is 8000x8000 pixels, above FER Lab's limit of 50,000,000 pixels for one image."

    with pytest.raises(ImageTooLarge, match="^this file " + expected):
        load_photo(bomb)
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    with pytest.raises(ImageTooLarge) as caught:
        read_image_file(path)
    assert str(caught.value) == f"{path} {expected}"
    folder = one_face_folder(tmp_path / "faces", "bomb.png", bomb)
    with pytest.raises(DatasetError) as caught:
        data.load(folder)
    assert str(caught.value) == f"{folder / 'happy' / 'bomb.png'} {expected}"
    with pytest.raises(DatasetError) as caught:
        data.load(zip_of({"happy/bomb.png": bomb}), name="bomb.zip")
    assert str(caught.value) == f"bomb.zip:happy/bomb.png {expected}"


def test_an_image_over_the_side_limit_is_refused():
    with pytest.raises(ImageTooLarge) as caught:
        load_photo(header_only_png(30000, 10))
    assert str(caught.value) == (
        "this file is 30000x10 pixels, above FER Lab's limit of 20,000 pixels for the longest side of an image."
    )


def test_an_image_file_over_the_file_limit_is_refused_after_a_bounded_read(tmp_path, monkeypatch):
    with pytest.raises(ImageTooLarge) as caught:
        load_photo(bytes(limits.MAX_IMAGE_FILE_BYTES + 1))
    assert str(caught.value) == "this file is larger than 64 MiB, FER Lab's limit for one image file."

    monkeypatch.setattr(limits, "MAX_IMAGE_FILE_BYTES", 1024)
    big = jpeg_bytes(Image.fromarray(smooth_noise((200, 200), 4)))
    assert len(big) > 1024
    path = tmp_path / "big.jpg"
    path.write_bytes(big)
    assert len(limits.read_file(path, 1024)) == 1025  # one byte past the limit, never the whole file
    with pytest.raises(ImageTooLarge, match="larger than 1 KiB"):
        read_image_file(path)
    with pytest.raises(
        DatasetError, match="big.jpg is larger than 1 KiB, FER Lab's limit for one image file"
    ):
        data.load(one_face_folder(tmp_path / "faces", "big.jpg", big))


def test_more_images_or_classes_than_the_limits_are_refused(tmp_path, monkeypatch):
    root = tmp_path / "faces"
    for cls in ("angry", "happy", "sad"):
        (root / cls).mkdir(parents=True)
        cv2.imwrite(str(root / cls / "a.png"), smooth_noise((48, 48), 5))
    monkeypatch.setattr(limits, "MAX_FACES", 2)
    with pytest.raises(DatasetError) as caught:
        data.load(root)
    assert str(caught.value) == f"{root} holds 3 images, above FER Lab's limit of 2 faces for a dataset."
    monkeypatch.setattr(limits, "MAX_FACES", 80_000)
    monkeypatch.setattr(limits, "MAX_CLASSES", 2)
    with pytest.raises(DatasetError) as caught:
        data.load(root)
    assert str(caught.value) == f"{root} has 3 class folders, above FER Lab's limit of 2 classes."


def test_images_in_a_blank_class_folder_are_rejected_not_learned_as_a_class(tmp_path):
    face = cv2.imencode(".png", smooth_noise((48, 48), 6))[1].tobytes()
    zipped = zip_of({"faces/ /a.png": face, "faces/sad/b.png": face, "faces/sad/c.png": face})
    dataset = data.load(zipped, name="blank.zip")
    assert dataset.classes == ("sad",) and len(dataset) == 2
    assert [(r.where, r.reason) for r in dataset.rejected] == [
        (" /a.png", "image outside a class folder")  # named below the zip's shared top folder
    ]


def test_a_dataset_refuses_class_names_that_no_card_could_hold():
    faces = np.zeros((2, 48, 48), np.uint8)
    with pytest.raises(DatasetError) as caught:
        data.Dataset(faces, np.array([0, 1]), np.array(["train"] * 2), ("sad", "sad"), source="twice.csv")
    assert str(caught.value) == "twice.csv has the same class name twice, so FER Lab cannot train on it."
    with pytest.raises(DatasetError, match="has a class name that is blank or not text"):
        data.Dataset(faces, np.array([0, 1]), np.array(["train"] * 2), ("sad", "  "))


def test_a_dataset_decoding_more_pixels_than_the_limit_is_refused(tmp_path, monkeypatch):
    # Flat PNGs compress to almost nothing, so many large ones fit a small zip: their pixels are counted.
    flat = cv2.imencode(".png", np.full((300, 300), 90, np.uint8))[1].tobytes()
    zipped = zip_of({f"faces/sad/{i}.png": flat for i in range(20)})
    assert len(zipped) < 20 * 1024
    monkeypatch.setattr(limits, "MAX_DATASET_PIXELS", 10 * 300 * 300)
    with pytest.raises(DatasetError) as caught:
        data.load(zipped, name="flat.zip", use_cache=False)
    assert str(caught.value) == (
        "flat.zip's images hold more than 900,000 pixels in all, FER Lab's limit for one dataset: "
        "shrink them to face size (48x48 is enough)."
    )
    monkeypatch.setattr(limits, "MAX_DATASET_PIXELS", 20 * 300 * 300)
    assert len(data.load(zipped, name="flat.zip", use_cache=False)) == 20


# --- .npz ---------------------------------------------------------------------------------------------


def test_an_npz_declaring_a_3_5_gb_array_is_refused_before_it_is_loaded(tmp_path):
    shape = (1_520_000, 48, 48)  # 3.5 GB of uint8 faces, declared by a header of 128 bytes
    path = tmp_path / "bomb.npz"
    path.write_bytes(
        npz_of({"images": npy_header_only(shape, "|u1"), "labels": npy_bytes(np.zeros(3, np.int64))})
    )

    assert load_bounded(path) == (
        f"{path}:images.npy declares a uint8 array of shape {shape}, 3,502,080,000 bytes (3,339.8 MiB), "
        "above FER Lab's limit of 184,320,000 bytes (175.8 MiB) for one array."
    )


def test_an_npz_of_python_objects_is_refused():
    content = npz_of({"images": npy_header_only((2,), "|O"), "labels": npy_bytes(np.zeros(2, np.int64))})
    with pytest.raises(DatasetError) as caught:
        data.load(content, name="pickle.npz")
    assert (
        str(caught.value)
        == "pickle.npz:images.npy holds Python objects, which FER Lab never loads from a file."
    )


def _npz(images: np.ndarray, labels: np.ndarray, **extra: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, images=images, labels=labels, **extra)
    return buffer.getvalue()


FACES = np.zeros((3, 48, 48), np.uint8)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"labels": np.array([0, 7, 1])},
            "bad.npz has labels outside 0..6, the indices of its 7 classes.",
        ),
        (
            {"labels": np.array([0, -1, 1])},
            "bad.npz has labels outside 0..6, the indices of its 7 classes.",
        ),
        (
            {"labels": np.array([0, 2, 1]), "classes": np.array(["a", "b"])},
            "bad.npz has labels outside 0..1, the indices of its 2 classes.",
        ),
        ({"labels": np.array([0, 1])}, "bad.npz has 2 labels for 3 images."),
        (
            {"labels": np.array([0, 1, 2]), "split": np.array(["train", "val"])},
            "bad.npz has 2 split names for 3 images.",
        ),
        (
            {"labels": np.array([0, 1, 2]), "split": np.array(["train", "val", "holdout"])},
            "bad.npz has split names other than train, val, test.",
        ),
        (
            {"labels": np.array([0.0, 1.0, 2.0])},
            "bad.npz:labels.npy is a float64 array of shape (3,), not what FER Lab writes there.",
        ),
        (
            {"labels": np.array([0, 1, 2]), "classes": np.array(["a", "a"])},
            "bad.npz has the same class name twice.",
        ),
        (
            {"labels": np.array([0, 1, 1]), "classes": np.array(["happy", ""])},
            "bad.npz has a class name that is blank or not text.",
        ),
        (
            {"labels": np.array([0, 1, 2]), "meta": np.array("[" * 100_000)},
            "bad.npz has a damaged meta record (it is not the JSON FER Lab writes).",
        ),
        (
            {"labels": np.array([0, 1, 2]), "meta": np.array(json.dumps({"rejected": [[1, 2, 3]]}))},
            "bad.npz has a damaged meta record (it is not the JSON FER Lab writes).",
        ),
    ],
    ids=[
        "label-too-high",
        "label-negative",
        "label-beyond-own-classes",
        "labels-short",
        "split-short",
        "split-unknown",
        "labels-float",
        "classes-twice",
        "class-blank",
        "meta-nested",
        "meta-shape",
    ],
)
def test_an_inconsistent_npz_is_refused(arrays, message):
    with pytest.raises(DatasetError) as caught:
        data.load(_npz(FACES, **arrays), name="bad.npz")
    assert str(caught.value) == message


def test_an_npz_of_wrong_images_or_too_many_classes_is_refused(monkeypatch):
    with pytest.raises(DatasetError) as caught:
        data.load(_npz(np.zeros((3, 32, 32), np.uint8), np.zeros(3, np.int64)), name="small.npz")
    assert str(caught.value) == "small.npz:images.npy does not hold uint8 48x48 images."
    monkeypatch.setattr(limits, "MAX_CLASSES", 2)
    with pytest.raises(DatasetError) as caught:
        data.load(_npz(FACES, np.zeros(3, np.int64), classes=np.array(["a", "b", "c"])), name="wide.npz")
    assert str(caught.value) == "wide.npz:classes.npy declares 3 classes, above FER Lab's limit of 2."


# --- CSV ----------------------------------------------------------------------------------------------


def test_a_csv_of_two_million_short_rows_is_refused_while_scanning(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(b"emotion,pixels,Usage\n" + b"0,1 2 3,Training\n" * 2_000_000)

    expected = "has more than 80,000 rows, FER Lab's limit for a CSV (fer2013.csv has 35,887)."
    assert load_bounded(path) == f"{path} {expected}"
    assert load_bounded(path, as_upload=True) == f"rows.csv {expected}"


def test_a_csv_with_one_500_mb_line_is_refused_without_scanning_it(tmp_path):
    path = tmp_path / "line.csv"
    with open(path, "wb") as file:
        file.write(b"emotion,pixels,Usage\n0,")
        chunk = b"7 " * (MiB // 2)
        for _ in range(500):
            file.write(chunk)
        file.write(b",Training\n")

    try:
        assert load_bounded(path) == (
            f"{path} has a line longer than 64 KiB (line 2), FER Lab's limit for a CSV line; "
            "a FER2013 row is under 10 KiB."
        )
    finally:
        path.unlink()  # pytest keeps recent tmp_path folders: not 500 MB of them


def test_a_long_line_in_an_uploaded_csv_is_refused():
    content = b"emotion,pixels\n0," + b"1 " * 40_000 + b"\n"
    with pytest.raises(DatasetError) as caught:
        data.load(content, name="long.csv")
    assert str(caught.value) == (
        "long.csv has a line longer than 64 KiB (line 2), FER Lab's limit for a CSV line; "
        "a FER2013 row is under 10 KiB."
    )
    # A FER2013 row (2,304 values of 3 digits) with CRLF is well inside the limit.
    row = b"0," + b" ".join([b"255"] * 2304) + b",Training\r\n"
    assert len(data.load(b"emotion,pixels,Usage\r\n" + row, name="ok.csv")) == 1


# --- one decoder: the same upright pixels everywhere -------------------------------------------------


def _exif_rotated(image: Image.Image) -> tuple[bytes, bytes]:
    """The same JPEG scan without and with an EXIF "rotate 90 degrees clockwise to display" tag."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg_bytes(image, quality=90), jpeg_bytes(image, quality=90, exif=exif.tobytes())


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_an_exif_rotated_jpeg_is_upright_on_the_page_in_predict_and_in_datasets(tmp_path, mode):
    array = smooth_noise((60, 90, 3) if mode == "RGB" else (60, 90), 6)
    plain, rotated = _exif_rotated(Image.fromarray(array, mode))
    upright = np.rot90(images.decode(plain), k=-1)  # orientation 6: turn the stored picture clockwise
    assert upright.shape == (90, 60, 3)

    np.testing.assert_array_equal(load_photo(rotated), upright)  # the Photo page
    path = tmp_path / "photo.jpg"
    path.write_bytes(rotated)
    np.testing.assert_array_equal(read_image_file(path), upright)  # predict
    dataset = data.load(one_face_folder(tmp_path / "faces", "photo.jpg", rotated))  # the dataset loader
    np.testing.assert_array_equal(dataset.images[0], to_face(upright))
    zipped = data.load(zip_of({"happy/photo.jpg": rotated}), name="photo.zip")
    np.testing.assert_array_equal(zipped.images[0], to_face(upright))


def test_predict_reads_the_exif_rotated_photo_upright(tmp_path, tiny_model_dir, capsys):
    plain, rotated = _exif_rotated(Image.fromarray(smooth_noise((60, 90, 3), 7)))
    photo, upright_png = tmp_path / "photo.jpg", tmp_path / "upright.png"
    photo.write_bytes(rotated)
    cv2.imwrite(str(upright_png), load_photo(rotated))

    code = cli.main(
        ["predict", "--model", str(tiny_model_dir), str(photo), str(upright_png), "--whole", "--json"]
    )
    assert code == 0
    from_jpeg, from_png = json.loads(capsys.readouterr().out)
    assert from_jpeg[0]["box"] == [0, 0, 60, 90]  # portrait: the tag was applied
    assert from_jpeg == from_png


@pytest.mark.parametrize(
    ("make_file", "fragment"),
    [
        (
            lambda: header_only_png(8000, 8000),
            "is 8000x8000 pixels, above FER Lab's limit of 50,000,000 pixels",
        ),
        (lambda: jpeg_bytes(Image.fromarray(smooth_noise((64, 64), 8)))[:400], "is truncated or damaged"),
    ],
    ids=["too-large", "truncated"],
)
def test_predict_refuses_bad_images_in_one_line(tmp_path, tiny_model_dir, capsys, make_file, fragment):
    path = tmp_path / "photo.jpg"
    path.write_bytes(make_file())
    code = cli.main(["predict", "--model", str(tiny_model_dir), str(path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"predict: {path} {fragment}")


# --- one decoder: modes, depths, frames --------------------------------------------------------------


def test_a_16_bit_png_is_scaled_not_clipped():
    levels = np.array([[0, 255, 256, 40000, 65535]], np.uint16)
    gray_png = cv2.imencode(".png", levels)[1].tobytes()
    expected = (levels >> 8).astype(np.uint8)  # 0, 0, 1, 156, 255
    np.testing.assert_array_equal(images.decode(gray_png, gray=True), expected)
    np.testing.assert_array_equal(load_photo(gray_png), np.dstack([expected] * 3))
    colour = np.dstack([levels, levels // 2, 65535 - levels])  # BGR
    colour_png = cv2.imencode(".png", colour)[1].tobytes()
    np.testing.assert_array_equal(load_photo(colour_png), (colour >> 8).astype(np.uint8))


def test_a_palette_png_decodes_to_its_colours_and_transparency_to_white():
    indices = np.array([[0, 1, 2, 1]], np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)  # red, green, blue (RGB)
    expected = np.array([[[0, 0, 255], [0, 255, 0], [255, 0, 0], [0, 255, 0]]], np.uint8)  # BGR
    np.testing.assert_array_equal(load_photo(png_of(image)), expected)
    expected[0, 1] = expected[0, 3] = 255  # index 1 transparent: white
    np.testing.assert_array_equal(load_photo(png_of(image, transparency=1)), expected)


def test_la_rgba_and_cmyk_images_are_converted_onto_white():
    la = Image.fromarray(np.dstack([np.array([[0, 100]], np.uint8), np.array([[0, 255]], np.uint8)]), "LA")
    np.testing.assert_array_equal(images.decode(png_of(la), gray=True), [[255, 100]])
    rgba = Image.new("RGBA", (4, 4), (200, 100, 0, 128))
    composite = load_photo(png_of(rgba))[0, 0].astype(int)  # BGR
    expected = [round((c * 128 + 255 * 127) / 255) for c in (0, 100, 200)]
    assert np.abs(composite - expected).max() <= 1
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red ink
    pixel = load_photo(jpeg_bytes(cmyk, quality=95))[8, 8].astype(int)
    assert pixel[2] > 240 and pixel[0] < 15 and pixel[1] < 15


def test_an_animated_image_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    pixel = load_photo(buffer.getvalue())[4, 4]
    assert tuple(int(v) for v in pixel) == (0, 0, 255)  # red, in BGR


@pytest.mark.parametrize(
    "content",
    [
        jpeg_bytes(Image.fromarray(smooth_noise((64, 64), 9))),  # gray: OpenCV's fast path must not take it
        jpeg_bytes(Image.fromarray(smooth_noise((64, 64, 3), 10))),
        cv2.imencode(".png", smooth_noise((64, 64, 3), 11))[1].tobytes(),
    ],
    ids=["gray-jpeg", "colour-jpeg", "png"],
)
def test_a_truncated_image_is_refused(tmp_path, content):
    half = content[: len(content) // 2]
    with pytest.raises(ImageError) as caught:
        load_photo(half)
    assert (
        str(caught.value)
        == "this file is truncated or damaged, so FER Lab does not use it; try another copy of it."
    )
    assert images.decode(content).shape[:2] == (64, 64)  # whole, it decodes

    root = one_face_folder(tmp_path / "faces", "half.jpg", half)
    (root / "happy" / "whole.jpg").write_bytes(content)
    dataset = data.load(root)
    assert len(dataset) == 1 and dataset.rejected_counts() == {"truncated or damaged image": 1}


# --- one decoder: ordinary JPEGs decode as they did ---------------------------------------------------


def _ordinary_jpegs() -> list[bytes]:
    """JPEGs like a dataset's: FER2013-like gray 48x48, larger, progressive, colour, several writers."""
    files = []
    for seed, (shape, quality) in enumerate(
        [((48, 48), 75), ((48, 48), 95), ((120, 90), 85), ((48, 48, 3), 90), ((90, 120, 3), 70)]
    ):
        pixels = smooth_noise(shape, 20 + seed)
        files.append(cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
        files.append(cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes())
        image = Image.fromarray(pixels[..., ::-1].copy() if pixels.ndim == 3 else pixels)
        files.append(jpeg_bytes(image, quality=quality, subsampling=0 if seed % 2 else 2))
    return files


def test_ordinary_jpegs_decode_to_the_pixels_opencv_gave_before(tmp_path, monkeypatch):
    files = _ordinary_jpegs()
    before = [cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED) for content in files]
    for content, old in zip(files, before, strict=True):
        np.testing.assert_array_equal(images.decode(content, gray=True), to_gray(old))
        if old.ndim == 3:
            np.testing.assert_array_equal(images.decode(content), old)
    # FER2013-like files take OpenCV's fast path; Pillow's decoding of them is the same.
    assert images._plain_gray_jpeg_size(files[0]) == (48, 48)
    fast = [images.decode(content, gray=True) for content in files]
    monkeypatch.setattr(images, "_plain_gray_jpeg_size", lambda content: None)
    for content, pixels in zip(files, fast, strict=True):
        np.testing.assert_array_equal(images.decode(content, gray=True), pixels)
    monkeypatch.undo()

    # Through the dataset loader, from a folder and from a zip: the faces training saw before.
    root = tmp_path / "faces"
    (root / "happy").mkdir(parents=True)
    for i, content in enumerate(files):
        (root / "happy" / f"{i:02d}.jpg").write_bytes(content)
    expected = np.stack([to_face(old) for old in before])
    np.testing.assert_array_equal(data.load(root).images, expected)
    zipped = zip_of({f"happy/{i:02d}.jpg": content for i, content in enumerate(files)}, zipfile.ZIP_DEFLATED)
    np.testing.assert_array_equal(data.load(zipped, name="faces.zip").images, expected)
