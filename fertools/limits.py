"""Limits on untrusted input: how much an upload or a dataset file may declare before FER Lab reads it.

A hosted FER Lab serves a whole class from one process, so one hostile file must not take the
memory everyone else needs. Every loader checks what a file *declares* (a zip's member count and
sizes, an array's shape, an image's dimensions, a CSV's line lengths and row count) against these
limits before it allocates, reads at most a limit's worth of bytes in case the declaration lies,
and refuses with the limit named (:class:`fertools.data.DatasetError`,
:class:`fertools.images.ImageError`).

The values admit FER2013 in each of its forms with room to spare (35,887 faces of 48x48 = 2,304
pixels, 83 MB as ``uint8``; ``fer2013.csv`` is 287 MiB; the Kaggle image release is ~40 MB of
small JPEGs) and keep the worst accepted input to a few hundred MB. Loaders read them as
``limits.NAME`` at call time, so a test may lower one with ``monkeypatch``.
"""

from __future__ import annotations

import os

from fertools.constants import NUM_PIXELS

MiB = 1 << 20

# --- datasets ------------------------------------------------------------------------------

#: Faces in one dataset: over twice FER2013's 35,887, and their images still fit in 184 MB.
MAX_FACES = 80_000
#: Class names in one dataset: FER sets have 7 or 8; beyond this a folder tree is no FER set.
MAX_CLASSES = 1_000
#: Pixels decoded for one folder or zip of images, all images together: FER2013's are 66
#: million; 80,000 faces of 224x224 are 4.0 billion. A flat 7000x7000 PNG is 61 KB, so without
#: this a 200 MB zip of them would keep the server decoding for minutes.
MAX_DATASET_PIXELS = 4_000_000_000

# --- uploads and CSV -----------------------------------------------------------------------

#: Bytes of one upload, and of a CSV inside a zip (both are held in memory whole): FER2013's CSV
#: is 287 MiB; the same as ``server.maxUploadSize = 400`` in ``.streamlit/config.toml``.
MAX_UPLOAD_BYTES = 400 * MiB
#: Bytes of one CSV line: a FER2013 row is at most ~9.2 KB (2,304 values of 1-3 digits), a wide
#: row of float exports (``255.0,``) ~14 KB; a longer line is no face.
MAX_CSV_LINE_BYTES = 64 * 1024
#: Lines of one CSV after the header, blank ones included: the parser sets a face's 2,304 bytes
#: aside for each line before it knows which lines are good, so this bounds that to 184 MB.
MAX_CSV_ROWS = MAX_FACES

# --- zips (also .npz, which is a zip) --------------------------------------------------------

#: Members of one zip: a macOS zip of FER2013 holds ~72,000 (each image with its
#: ``__MACOSX/._`` twin); listing a member costs ~0.5 KB.
MAX_ZIP_MEMBERS = 200_000
#: Bytes of a zip's central directory, which opening a zip parses whole: FER2013's macOS zip has
#: ~10 MB; 16 MiB of the smallest entries (47 bytes) list ~360,000 members in ~200 MB.
MAX_ZIP_DIRECTORY_BYTES = 16 * MiB
#: Uncompressed bytes of all members of one zip, as declared: FER2013 inflates to ~300 MB as a
#: CSV, ~40 MB as images; this bounds the inflating a zip can ask for to a few seconds.
MAX_ZIP_TOTAL_BYTES = 512 * MiB
#: Uncompressed over compressed size of one member: real data deflates 1-10x (JPEG and PNG
#: hardly, FER2013's CSV ~3x); zip bombs use deflate's maximum, ~1,032x.
MAX_COMPRESSION_RATIO = 100
#: Members below this uncompressed size are not held to the ratio: they cannot hurt, and a flat
#: colour 48x48 BMP (7 KB) deflates ~130x.
COMPRESSION_RATIO_MIN_BYTES = 1 * MiB

# --- .npz ------------------------------------------------------------------------------------

#: Bytes of one array in an ``.npz``: the images of ``MAX_FACES`` faces (184,320,000 bytes).
MAX_NPZ_ARRAY_BYTES = MAX_FACES * NUM_PIXELS
#: Bytes of the JSON ``meta`` string of an ``.npz`` (4 bytes a character): twice what a set of
#: ``MAX_FACES`` rejected rows (~50 characters each) writes; parsing it costs ~10x in objects.
MAX_NPZ_META_BYTES = 32 * MiB

# --- images ----------------------------------------------------------------------------------

#: Bytes of one encoded image file: a 50-megapixel phone JPEG is 10-25 MB.
MAX_IMAGE_FILE_BYTES = 64 * MiB
#: Pixels of one image, width x height, checked on the header before decoding: a phone photo has
#: ~50 megapixels at most, 200 MB decoded as RGBA.
MAX_IMAGE_PIXELS = 50_000_000
#: Longest side of one image: a phone panorama is 16,000-20,000 pixels wide; a longer strip is
#: no photo and no face.
MAX_IMAGE_SIDE = 20_000


def describe_bytes(count: int) -> str:
    """A byte count for a message: ``64 MiB``, ``64 KiB``, ``512 bytes`` or ``3,502,080,000 bytes (3,339.8 MiB)``."""
    if count >= MiB and count % MiB == 0:
        return f"{count // MiB:,} MiB"
    if count >= MiB:
        return f"{count:,} bytes ({count / MiB:,.1f} MiB)"
    if count >= 1024 and count % 1024 == 0:
        return f"{count // 1024:,} KiB"
    return f"{count:,} bytes"


def read_file(path: str | os.PathLike, limit: int) -> bytes:
    """A file's bytes, at most ``limit`` + 1 of them: one byte more than ``limit`` tells the caller to refuse.

    Sized by ``fstat`` first, since ``read(limit + 1)`` allocates the whole limit for every
    file (64 MiB per 1.5 KB face); with ``os.read`` and no buffered reader this is cheaper than
    a plain ``open().read()``, which matters over 28,709 faces. A file holding more than
    ``fstat`` said (growing, or a special file) is read on in 1 MiB steps to the bound.
    Raises ``OSError``.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        expected = min(os.fstat(fd).st_size, limit) + 1
        parts, total = [], 0
        while total <= limit:
            chunk = os.read(fd, expected - total if total < expected else min(MiB, limit + 1 - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


# --- your own faces --------------------------------------------------------------------------

#: Faces in one user's album (fertools.album): 50 of each expression, 2.3 KB each on disk and in
#: memory (0.8 MB an album); enough to fine-tune on in about a minute, too few to fill a disk.
MAX_ALBUM_FACES = 350


# --- names ------------------------------------------------------------------------------------

#: Characters of a run's name: enough for "dropout 0.5, 30 epochs, lr 1e-3 cosine"; the name is
#: shown in tables, pickers, the sidebar and the model's card, where a page-long name would not fit.
MAX_RUN_NAME = 80


def clean_name(name: object) -> str:
    """A user-given name on one line (whitespace runs collapsed) and at most :data:`MAX_RUN_NAME` characters; "" if none."""
    if not isinstance(name, str):
        return ""
    return " ".join(name.split())[:MAX_RUN_NAME].strip()
