"""imgclf.data.images: opening every kind of file safely and the one preprocessing path."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgclf.data.images import (
    ImageError,
    PreprocessSpec,
    from_array,
    load_for_model,
    open_image,
    preprocess_image,
    resize_center_crop,
    to_mode,
)
from imgclf.errors import ImgclfError


def _save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return path


def test_rgb_png(tmp_path):
    arr = np.zeros((10, 14, 3), np.uint8)
    arr[..., 0] = 200
    path = _save(Image.fromarray(arr), tmp_path / "a.png")
    img = open_image(path)
    assert img.size == (14, 10) and img.mode == "RGB"
    out = preprocess_image(img, PreprocessSpec(size=8))
    assert out.shape == (3, 8, 8) and out.dtype == np.uint8
    assert (out[0] == 200).all() and (out[1:] == 0).all()


def test_grayscale_to_rgb_and_to_one_channel(tmp_path):
    path = _save(Image.fromarray(np.full((12, 12), 90, np.uint8), "L"), tmp_path / "g.png")
    rgb = load_for_model(path, PreprocessSpec(size=12, channels=3))
    gray = load_for_model(path, PreprocessSpec(size=12, channels=1))
    assert rgb.shape == (3, 12, 12) and (rgb == 90).all()
    assert gray.shape == (1, 12, 12) and (gray == 90).all()


def test_rgba_transparent_goes_on_white(tmp_path):
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., 0] = 255  # red, ...
    arr[:, :4, 3] = 255  # opaque on the left half, fully transparent on the right half
    path = _save(Image.fromarray(arr, "RGBA"), tmp_path / "t.png")
    out = load_for_model(path, PreprocessSpec(size=8, resample="nearest"))
    assert (out[:, :, :4] == np.array([255, 0, 0])[:, None, None]).all()
    assert (out[:, :, 4:] == 255).all()  # white, not black


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)  # index 0 black, index 1 green
    img.paste(1, (0, 0, 4, 8))
    path = _save(img, tmp_path / "p.png", transparency=0)  # black is the transparent index
    assert Image.open(path).mode == "P"
    out = load_for_model(path, PreprocessSpec(size=8, resample="nearest"))
    assert (out[:, :, :4] == np.array([0, 255, 0])[:, None, None]).all()
    assert (out[:, :, 4:] == 255).all()


def test_cmyk_jpeg(tmp_path):
    path = _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "c.jpg")  # pure red in CMYK
    img = open_image(path)
    assert img.mode == "CMYK"
    out = load_for_model(path, PreprocessSpec(size=8))
    assert out.shape == (3, 8, 8)
    r, g, b = (int(out[c].mean()) for c in range(3))
    assert r > 200 and g < 60 and b < 60


def test_sixteen_bit_png(tmp_path):
    arr = np.zeros((8, 8), np.uint16)
    arr[:, 4:] = 65535
    arr[:, :4] = 32768
    path = _save(Image.fromarray(arr), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    out = load_for_model(path, PreprocessSpec(size=8, resample="nearest"))
    assert out.shape == (3, 8, 8)
    assert (out[:, :, 4:] == 255).all()
    assert (abs(out[:, :, :4].astype(int) - 128) <= 1).all()  # scaled to 8 bits, not clipped


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)  # landscape: 40 wide, 20 high; left half white
    arr[:, :20] = 255
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # orientation 6: the viewer must rotate 90 degrees clockwise
    path = _save(img, tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    opened = open_image(path)
    assert opened.size == (20, 40)  # portrait after rotation
    pixels = np.asarray(opened.convert("L"), dtype=np.int64)
    assert pixels[:15].mean() > 200 and pixels[25:].mean() < 50  # the white left half is now on top


@pytest.mark.parametrize(("w", "h"), [(40, 20), (20, 40), (33, 33), (7, 50)])
def test_resize_shortest_side_and_centre_crop(w, h):
    arr = np.zeros((h, w), np.uint8)
    img = Image.fromarray(arr, "L")
    assert resize_center_crop(img, 16).size == (16, 16)
    assert preprocess_image(img, PreprocessSpec(size=16, channels=1)).shape == (1, 16, 16)


def test_centre_crop_keeps_the_middle():
    arr = np.zeros((10, 30), np.uint8)  # wide image: a white 10x10 square in the middle third
    arr[:, 10:20] = 255
    out = resize_center_crop(Image.fromarray(arr, "L"), 10, resample="nearest")
    assert (np.asarray(out) == 255).all()
    crop = resize_center_crop(Image.fromarray(arr, "L"), 10, crop_fraction=0.5, resample="nearest")
    assert (np.asarray(crop) == 255).all()  # zoomed in on the centre


def test_preprocess_reads_bytes():
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), (1, 2, 3)).save(buf, format="PNG")
    out = load_for_model(buf.getvalue(), PreprocessSpec(size=6))
    assert out.shape == (3, 6, 6) and tuple(out[:, 0, 0]) == (1, 2, 3)


def test_from_array_layouts():
    spec = PreprocessSpec(size=8)
    hwc = np.full((8, 8, 3), 7, np.uint8)
    assert (from_array(hwc, spec) == 7).all()
    chw = np.full((3, 8, 8), 9, np.uint8)
    assert (from_array(chw, spec) == 9).all()
    unit = np.full((8, 8), 0.5, np.float32)  # floats in 0..1 are scaled to 0..255
    assert abs(int(from_array(unit, spec)[0, 0, 0]) - 127) <= 1
    assert from_array(Image.new("L", (20, 10), 3), spec).shape == (3, 8, 8)


def test_to_mode_la_and_float():
    la = Image.new("LA", (4, 4), (0, 0))
    assert np.asarray(to_mode(la, 1)).min() == 255
    f = Image.fromarray(np.full((4, 4), 100.0, np.float32), "F")
    assert np.asarray(to_mode(f, 1)).max() == 100


# errors: one line naming the file ----------------------------------------------------------------------------

def _one_line_error(path, **kwargs) -> str:
    with pytest.raises(ImageError) as err:
        load_for_model(path, PreprocessSpec(size=8, **kwargs))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert isinstance(err.value, ImgclfError)
    return msg


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    assert "not an image" in _one_line_error(path)


def test_truncated_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert "truncated" in _one_line_error(path)


def test_empty_file(tmp_path):
    path = tmp_path / "zero.png"
    path.write_bytes(b"")
    assert "0 bytes" in _one_line_error(path)
    with pytest.raises(ImageError, match="0 bytes"):
        open_image(b"")


def test_missing_file(tmp_path):
    assert "not found" in _one_line_error(tmp_path / "nope.png")


def test_image_above_max_pixels(tmp_path):
    path = _save(Image.new("RGB", (100, 50)), tmp_path / "big.png")
    msg = _one_line_error(path, max_pixels=4999)
    assert "too large" in msg and "5,000" in msg
    assert load_for_model(path, PreprocessSpec(size=8, max_pixels=5000)).shape == (3, 8, 8)


def test_error_uses_the_given_name(tmp_path):
    path = tmp_path / "x.png"
    path.write_text("nope")
    with pytest.raises(ImageError, match="^upload.png: not an image"):
        load_for_model(path.read_bytes(), PreprocessSpec(size=8), name="upload.png")


def test_draft_decoding_keeps_enough_pixels(tmp_path):
    rng = np.random.default_rng(1)
    path = _save(Image.fromarray(rng.integers(0, 255, (400, 600, 3), dtype=np.uint8)), tmp_path / "large.jpg")
    img = open_image(path, draft_size=50)
    assert min(img.size) >= 50 and img.size[0] < 600  # decoded at a reduced scale, never below the target
