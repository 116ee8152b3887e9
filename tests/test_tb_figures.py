"""tools/tb_figures.py: the last logged image of each chosen tag, byte for byte as TensorBoard stored it."""

from __future__ import annotations


import numpy as np
import pytest
from support.tools import load_tool
from torch.utils.tensorboard import SummaryWriter



@pytest.fixture(scope="module")
def tb_figures():
    return load_tool("tb_figures")


def _png_pixels(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_the_last_image_of_each_matching_tag_is_written(tb_figures, tmp_path):
    run = tmp_path / "run"
    writer = SummaryWriter(str(run))
    images = {step: np.full((3, 4, 5), 40 * step, dtype=np.uint8) for step in range(3)}
    for step, image in images.items():
        writer.add_image("dynamic_loss/margins", image, global_step=step)
    writer.add_image("val/per_class_accuracy", images[0], global_step=0)
    writer.close()
    assert tb_figures.main([str(run), "--tags", "dynamic_loss/", "--prefix", str(tmp_path / "out" / "dl-")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["dl-dynamic_loss_margins.png"]  # the other tag is not chosen
    np.testing.assert_array_equal(_png_pixels(tmp_path / "out" / written[0]), images[2].transpose(1, 2, 0))


def test_a_folder_without_events_or_matching_tags_is_a_clear_error(tb_figures, tmp_path):
    with pytest.raises(SystemExit, match="Expected TensorBoard event files"):
        tb_figures.main([str(tmp_path)])
    writer = SummaryWriter(str(tmp_path / "run"))
    writer.add_scalar("x", 1.0, 0)
    writer.close()
    with pytest.raises(SystemExit, match="Expected image tags"):
        tb_figures.main([str(tmp_path / "run"), "--tags", "dynamic_loss/"])
