"""FER Lab's library: data, augmentation, models, training, evaluation and recognition.

Plain Python on numpy arrays and Keras models; no Streamlit here, so the app,
the command line and the tests all share it.
"""

import contextlib
import sys

from fertools.constants import FER2013_CLASSES, IMAGE_SIZE, INPUT_SHAPE

# NOTE: pylibsrtp (aiortc's SRTP, behind the Webcam page's streamlit-webrtc) segfaults the
# whole process in srtp_init() when it is first imported *after* TensorFlow, whose globally
# loaded crypto symbols shadow its own. Every TensorFlow import here goes through this
# package, so loading pylibsrtp first keeps any page order safe. Optional: no aiortc, no risk.
# Once TensorFlow is loaded it is too late: importing pylibsrtp then is the crash itself.
if "tensorflow" not in sys.modules:
    with contextlib.suppress(ImportError):
        import pylibsrtp  # noqa: F401

__version__ = "0.1.0"
__all__ = ["FER2013_CLASSES", "IMAGE_SIZE", "INPUT_SHAPE", "__version__"]
