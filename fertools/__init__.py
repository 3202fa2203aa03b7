"""FER Lab's library: data, augmentation, models, training, evaluation and recognition.

Plain Python on numpy arrays and Keras models; no Streamlit here, so the app,
the command line and the tests all share it.
"""

from fertools.constants import FER2013_CLASSES, IMAGE_SIZE, INPUT_SHAPE

__version__ = "0.1.0"
__all__ = ["FER2013_CLASSES", "IMAGE_SIZE", "INPUT_SHAPE", "__version__"]
