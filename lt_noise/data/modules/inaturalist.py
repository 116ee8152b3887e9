"""iNaturalist 2018 (Van Horn et al. 2018): 437,513 training / 24,426 validation images, 8,142 species.

The official annotation files are COCO-style JSON: ``images`` (``id``, ``file_name`` relative to the
dataset root, e.g. ``train_val2018/Plantae/7477/3b60c9486db1d2ee875f11a669fbde4a.jpg``), ``annotations``
(``image_id``, ``category_id``) and ``categories`` (``id``, ``name``). The category ids are 0..8141, so
the label is the category id; in general categories are numbered by their rank among the sorted ids of
the training file. The long-tailed literature (LDAM-DRW, decoupling, ABSGD) trains on train2018 and
reports accuracy on val2018 (the test2018 labels were never released), so val2018 is the test split here;
use ``val_fraction`` for a held-out validation part.
"""

from __future__ import annotations

import json

import numpy as np

from lt_noise.data.files import PathTable
from lt_noise.data.modules.base import Split
from lt_noise.data.modules.file_base import ImageNetStyleDataModule

__all__ = ["INaturalist2018DataModule"]

_FILES = {"train": "train2018.json", "test": "val2018.json"}


class INaturalist2018DataModule(ImageNetStyleDataModule):
    """iNaturalist 2018 from its official JSON annotation files.

    Layout::

        <root>/train2018.json
        <root>/val2018.json
        <root>/train_val2018/<supercategory>/<category id>/<hash>.jpg

    Each JSON file is parsed once; only NumPy arrays (labels) and a byte buffer of paths are kept.
    ``class_names`` are the category names of train2018.json (obfuscated in the first release; replace
    the ``categories`` list with the published un-obfuscated one to get species names).

    Args:
        root: the dataset root.
        image_size: network input side (224).
        **kwargs: the options of :class:`~lt_noise.data.modules.base.LTNoiseDataModule`.
    """

    dataset_name = "iNaturalist 2018"
    layout = (
        "  <root>/train2018.json, <root>/val2018.json   (COCO-style: images[].file_name, annotations[].category_id)\n"
        "  <root>/train_val2018/<supercategory>/<category id>/*.jpg"
    )
    source = (
        "https://github.com/visipedia/inat_comp/tree/master/2018 (train_val2018.tar.gz, train2018.json.tar.gz, "
        "val2018.json.tar.gz), extracted into <root>"
    )

    def __init__(self, root: str = "data", **kwargs) -> None:
        super().__init__(root, **kwargs)
        self._category_ids: np.ndarray | None = None
        self._category_names: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        """Number of categories listed in train2018.json."""
        self.load_split("train")
        return len(self._category_ids)  # type: ignore[arg-type]

    @property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        self.load_split("train")
        return self._category_names

    def _load_json(self, split: str) -> dict:
        path = self.find_file(_FILES[split], [self.root])
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if not all(isinstance(data.get(key), list) for key in ("images", "annotations")):
                raise ValueError("expected the lists 'images' and 'annotations'")
        except (OSError, ValueError, AttributeError) as error:  # JSONDecodeError is a ValueError
            raise self.not_found([path], f"Could not read {path}: {error} (truncated or not a COCO-style file?)") from error
        return data

    def read_split(self, split: str) -> Split:
        if split not in _FILES:
            raise ValueError(f"Expected split in {tuple(_FILES)}, but got {split!r}")
        if split == "test":
            self.load_split("train")  # the category numbering comes from the training file
        data = self._load_json(split)
        where = self.root / _FILES[split]
        try:
            image_ids = np.array([image["id"] for image in data["images"]], dtype=np.int64)
            paths = PathTable.from_strings(image["file_name"] for image in data["images"])
            annotated = np.array([a["image_id"] for a in data["annotations"]], dtype=np.int64)
            categories = np.array([a["category_id"] for a in data["annotations"]], dtype=np.int64)
        except (KeyError, TypeError) as error:
            raise self.not_found(
                [where], f"Expected images[].id/file_name and annotations[].image_id/category_id: {error!r}"
            ) from error
        if split == "train":
            listed = data.get("categories") or [{"id": int(c)} for c in np.unique(categories)]
            order = sorted(range(len(listed)), key=lambda i: listed[i]["id"])
            self._category_ids = np.array([listed[i]["id"] for i in order], dtype=np.int64)
            self._category_names = tuple(str(listed[i].get("name", listed[i]["id"])) for i in order)
        # one annotation per image: order the annotations like the images
        by_image = np.argsort(annotated, kind="stable")
        position = np.searchsorted(annotated[by_image], image_ids)
        position = np.minimum(position, max(len(annotated) - 1, 0))
        matched = len(annotated) > 0 and (annotated[by_image][position] == image_ids).all()
        if not matched or len(np.unique(annotated)) != len(annotated) or len(annotated) != len(image_ids):
            raise self.not_found([where], "Expected exactly one annotation per image (truncated file?)")
        category = categories[by_image][position]
        labels = np.searchsorted(self._category_ids, category)  # type: ignore[arg-type]
        labels = np.minimum(labels, len(self._category_ids) - 1)  # type: ignore[arg-type]
        unknown = self._category_ids[labels] != category  # type: ignore[index]
        if unknown.any():
            raise self.not_found([where], f"Category id {int(category[unknown][0])} is not a category of train2018.json")
        return Split(images=self.image_files(self.root, paths), labels=labels.astype(np.int64))
