"""FER2013 readers, synthetic demo data, splits and the parsed-data cache.

``load_data(path)`` returns a :class:`FERData` with ``train``/``val``/``test`` splits of 48x48
uint8 images. Accepted sources (each CSV may also be gzip- or zip-compressed; compression is
detected from the file's first bytes, so a misnamed file still reads):

* the Kaggle ``fer2013.csv`` (``emotion,pixels,Usage``), also inside the Kaggle
  ``fer2013.tar.gz``; ``icml_face_data.csv``; the challenge's ``train.csv`` with an optional
  ``test.csv`` beside it (:mod:`.csvfile`);
* an image-folder tree ``<root>/train/<class>/*.png|jpg|jpeg`` plus ``test/`` and optionally
  ``val/`` or ``validation/``, or a ``.zip`` of one (:mod:`.folders`);
* a directory holding any of the above, also in a ``fer2013/`` sub-directory or in a zip of any
  name such as Kaggle's ``archive.zip`` (:mod:`.sources`).

Where a source has no validation split (train.csv, image trees without val/), a stratified
``val_fraction`` of train is carved off with a fixed seed (:mod:`.splits`). Parsed arrays are
cached by content (:mod:`.cache`); FER+ labels replace the FER2013 ones row by row
(:mod:`.ferplus`); ``"demo"`` gives synthetic faces (:mod:`.demo`).

Modules, lowest first: formats (names and records), blobs (bytes of files and archive
members), folders, csvfile, sources, cache, ferplus, options, splits, demo, load, summary.
"""

from __future__ import annotations

from fer_search.data.cache import cache_dir
from fer_search.data.demo import make_demo
from fer_search.data.load import load_data, load_recorded
from fer_search.data.sources import resolve_data_path
from fer_search.data.splits import FERData, FERSplit
from fer_search.data.summary import format_summary, summarize

__all__ = [
    "FERData",
    "FERSplit",
    "cache_dir",
    "format_summary",
    "load_data",
    "load_recorded",
    "make_demo",
    "resolve_data_path",
    "summarize",
]
