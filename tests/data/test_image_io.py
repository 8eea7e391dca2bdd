import numpy as np
import pytest
import torch
from PIL import Image

from vimi.data.image_io import from_uint8, read_image, resize_center_crop, save_image, to_uint8
from vimi.errors import MediaError


def test_read_real_photo_shape_and_range(real_photos):
    astronaut = read_image(real_photos["astronaut.png"])
    assert astronaut.shape == (3, 512, 512) and astronaut.dtype == torch.float32
    assert astronaut.min() >= -1 and astronaut.max() <= 1
    np.testing.assert_array_equal(to_uint8(astronaut), np.asarray(Image.open(real_photos["astronaut.png"])))


def test_jpeg_close_to_png(real_photos):
    png, jpg = read_image(real_photos["coffee.png"]), read_image(real_photos["coffee.jpg"])
    assert png.shape == jpg.shape == (3, 400, 600)
    assert (png - jpg).abs().mean() < 0.03


def test_resize_center_crop_keeps_the_centre(real_photos):
    # coffee is 400x600 (H x W): a square crop keeps the middle 400 columns.
    full = read_image(real_photos["coffee.png"])
    square = read_image(real_photos["coffee.png"], size=(400, 400))
    torch.testing.assert_close(square, full[:, :, 100:500], atol=1e-5, rtol=0)
    small = read_image(real_photos["cat.png"], size=(32, 48))
    assert small.shape == (3, 32, 48)


def test_resize_is_antialiased():
    # A 1-pixel checkerboard downscaled 8x must become flat grey, not alias into stripes.
    board = ((np.indices((256, 256)).sum(0) % 2) * 255).astype(np.uint8)
    small = np.asarray(resize_center_crop(Image.fromarray(board).convert("RGB"), (32, 32))).astype(float)
    assert abs(small.mean() - 127.5) < 2 and small.std() < 3


def test_exif_orientation_is_applied(tmp_path):
    # Stored 40 wide x 20 tall with EXIF "rotate 90 CW" (6): displayed 20 wide x 40 tall.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255  # left half white in storage -> top half white when displayed
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=100)
    image = read_image(path)
    assert image.shape == (3, 40, 20)
    assert image[:, :15].mean() > 0.9 and image[:, 25:].mean() < -0.9


def test_alpha_is_flattened_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left, opaque on the right
    rgba[:, 4:, 3] = 255
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    image = to_uint8(read_image(path))
    assert (image[:, :4] == 255).all()  # transparent -> white, not black
    assert (image[:, 4:] == [255, 0, 0]).all()


def test_palette_and_grey_become_rgb(tmp_path):
    Image.new("L", (5, 7), 100).save(tmp_path / "grey.png")
    Image.new("P", (5, 7), 3).save(tmp_path / "palette.gif")
    assert read_image(tmp_path / "grey.png").shape == (3, 7, 5)
    assert read_image(tmp_path / "palette.gif").shape == (3, 7, 5)


def test_save_and_read_back_exactly(tmp_path):
    image = from_uint8(np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8))
    path = save_image(image, tmp_path / "sub" / "x.png")
    torch.testing.assert_close(read_image(path), image)
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]  # no temp file left


def test_uint8_helpers_invert_each_other():
    frames = np.random.default_rng(1).integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)  # [T, H, W, C]
    video = from_uint8(frames)
    assert video.shape == (3, 4, 6, 5) and video.min() >= -1 and video.max() <= 1
    np.testing.assert_array_equal(to_uint8(video), frames)
    assert to_uint8(torch.full((3, 2, 2), 5.0)).max() == 255  # out-of-range values clamp


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(MediaError, match=r"x\.foo: unknown image suffix"):
        save_image(torch.zeros(3, 4, 4), tmp_path / "x.foo")


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match=r"absent\.png: file not found"):
        read_image(tmp_path / "absent.png")


def test_corrupt_and_truncated_images(tmp_path, real_photos):
    junk = tmp_path / "junk.png"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(MediaError, match=r"junk\.png: not a readable image"):
        read_image(junk)
    data = real_photos["astronaut.jpg"].read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=r"cut\.jpg: cannot decode image .*truncated"):
        read_image(cut)


def test_reads_from_bytes(real_photos):
    data = real_photos["cat.png"].read_bytes()
    torch.testing.assert_close(read_image(data), read_image(real_photos["cat.png"]))
