"""Decoding real and deliberately broken files: DICOM (pydicom-data's CR radiographs), PNG, JPEG."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from training.ingest.decode import decode_bytes, decode_file
from training.ingest.errors import BadFile

BIG = 10**8


def _dcm(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom-data lacks {name}"
    return path


@pytest.fixture(scope="module")
def rg1():
    return decode_file(_dcm("RG1_UNCR.dcm"), BIG)


@pytest.fixture(scope="module")
def rg3():
    return decode_file(_dcm("RG3_UNCR.dcm"), BIG)


def test_dicom_cr_decodes_to_unit_range(rg1, rg3):
    assert rg1.kind == "dicom" and rg1.pixels.shape == (1955, 1841)
    assert rg3.pixels.shape == (1760, 1760)
    for d in (rg1, rg3):
        assert d.pixels.dtype == np.float32
        assert 0.0 <= d.pixels.min() and d.pixels.max() <= 1.0
        assert d.pixels.max() - d.pixels.min() > 0.8  # the window spans the display range


def test_monochrome1_is_inverted_so_bone_is_bright(rg1, rg3):
    # RG1 is a PA chest (MONOCHROME1): lungs must come out darker than the spine/mediastinum
    p = rg1.pixels
    h, w = p.shape
    lungs = np.r_[p[int(.3 * h):int(.5 * h), int(.2 * w):int(.35 * w)].ravel(),
                  p[int(.3 * h):int(.5 * h), int(.65 * w):int(.8 * w)].ravel()].mean()
    spine = p[int(.3 * h):int(.5 * h), int(.46 * w):int(.54 * w)].mean()
    assert spine > lungs + 0.15, (spine, lungs)
    # RG3 is a lower leg: direct exposure beside the leg dark, the leg itself bright
    q = rg3.pixels
    h, w = q.shape
    rows = q[int(.2 * h):int(.6 * h)]
    air = rows[:, int(.30 * w):int(.35 * w)].mean()
    leg = rows[:, int(.48 * w):int(.52 * w)].mean()
    assert air < 0.25 and leg > 0.5, (air, leg)


@pytest.mark.parametrize("stem", ["RG1", "RG3"])
def test_jpeg2000_lossless_equals_uncompressed(stem, rg1, rg3):
    ref = rg1 if stem == "RG1" else rg3
    j2k = decode_file(_dcm(f"{stem}_J2KR.dcm"), BIG)
    assert j2k.pixels.shape == ref.pixels.shape
    assert np.array_equal(j2k.pixels, ref.pixels)


def test_dicom_group_token_is_opaque(rg1):
    assert rg1.group is not None and len(rg1.group) == 16
    assert "RG1" not in rg1.group


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG") if mode else Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def ramp16():
    y, x = np.mgrid[0:40, 0:60]
    return ((x * 1000 + y * 37) % 65536).astype(np.uint16)


def test_png_16bit_gray_is_exact(ramp16):
    d = decode_bytes(_png(ramp16), "a.png", BIG)
    assert d.kind == "png" and d.pixels.shape == (40, 60)
    assert np.array_equal(np.rint(d.pixels * 65535).astype(np.uint16), ramp16)


def test_png_8bit_gray_and_rgb():
    g = (np.arange(50 * 30) % 256).astype(np.uint8).reshape(30, 50)
    d = decode_bytes(_png(g), "g.png", BIG)
    assert np.array_equal(np.rint(d.pixels * 255).astype(np.uint8), g)
    rgb = np.stack([g, g, g], -1)
    d = decode_bytes(_png(rgb), "c.png", BIG)
    assert d.pixels.shape == (30, 50)
    assert np.abs(d.pixels * 255 - g).max() <= 1.0  # gray RGB keeps its gray levels


def test_png_16bit_rgb_reads_as_luminance():
    # Pillow writes 48-bit RGB PNGs only through raw encoding; build one by hand
    h, w = 8, 12
    arr = np.zeros((h, w, 3), ">u2")
    arr[..., 0] = 40000
    arr[..., 1] = 40000
    arr[..., 2] = 40000
    raw = b"".join(b"\x00" + arr[r].tobytes() for r in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    d = decode_bytes(png, "rgb16.png", BIG)
    assert d.pixels.shape == (h, w)
    assert abs(float(d.pixels.mean()) - 40000 / 65535) < 0.01


def test_jpeg_gray_and_rgb():
    y, x = np.mgrid[0:64, 0:64]
    g = (x * 4).astype(np.uint8)
    d = decode_bytes(_jpeg(g), "a.jpg", BIG)
    assert d.kind == "jpeg" and np.abs(d.pixels * 255 - g).mean() < 2.0
    d = decode_bytes(_jpeg(np.stack([g] * 3, -1)), "a.jpeg", BIG)
    assert d.pixels.shape == (64, 64) and np.abs(d.pixels * 255 - g).mean() < 3.0


def _huge_png_header(width: int, height: int) -> bytes:
    """A tiny PNG that claims width x height pixels: the shape of a decompression bomb."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


def bad_cases(ramp16) -> dict[str, tuple[str, bytes, str, int]]:
    """name -> (file name, bytes, expected reason, max_pixels)."""
    png = _png(ramp16)
    jpg = _jpeg((ramp16 >> 8).astype(np.uint8))
    dcm = open(_dcm("RG3_UNCR.dcm"), "rb").read()
    return {
        "zero_bytes": ("empty.png", b"", "empty", BIG),
        "text_as_png": ("notes.png", b"patient list, not an image\n" * 10, "not_an_image", BIG),
        "truncated_png": ("cut.png", png[: len(png) // 2], "truncated", BIG),
        "truncated_jpeg": ("cut.jpg", jpg[: len(jpg) // 2], "truncated", BIG),
        "truncated_dicom": ("cut.dcm", dcm[: int(len(dcm) * 0.6)], "truncated", BIG),
        "dicom_garbage": ("junk.dcm", b"\0" * 128 + b"DICM" + bytes(range(256)) * 4, "unreadable_dicom", BIG),
        "dicom_without_pixels": ("plan.dcm", open(_dcm("rtplan.dcm"), "rb").read(), "unreadable_dicom", BIG),
        "text_as_dcm": ("notes.dcm", b"hello" * 100, "unreadable_dicom", BIG),
        "jpeg_named_png": ("photo.png", jpg, "wrong_extension", BIG),
        "png_named_dcm": ("image.dcm", png, "wrong_extension", BIG),
        "png_bomb_header": ("bomb.png", _huge_png_header(100_000, 100_000), "decompression_bomb", BIG),
        "png_over_limit": ("big.png", png, "decompression_bomb", 1000),
        "dicom_over_limit": ("big.dcm", dcm, "decompression_bomb", 1000),
    }


@pytest.mark.parametrize("case", [
    "zero_bytes", "text_as_png", "truncated_png", "truncated_jpeg", "truncated_dicom", "dicom_garbage",
    "dicom_without_pixels", "text_as_dcm", "jpeg_named_png", "png_named_dcm", "png_bomb_header",
    "png_over_limit", "dicom_over_limit",
])
def test_bad_files_raise_with_reason(case, ramp16, tmp_path):
    name, data, reason, max_pixels = bad_cases(ramp16)[case]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(BadFile) as info:
        decode_file(path, max_pixels)
    assert info.value.code == reason, info.value.detail
    assert info.value.detail


def test_rescale_slope_intercept_then_window_in_hounsfield_units(tmp_path):
    import pydicom

    ds = pydicom.dcmread(_dcm("CT_small.dcm"))  # 16-bit signed CT, intercept -1024, no window
    ds.WindowCenter, ds.WindowWidth = 40, 400  # a soft-tissue window, in HU
    path = tmp_path / "ct.dcm"
    ds.save_as(path)
    out = decode_file(path, BIG).pixels
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.all(out[hu <= 40 - 200] == 0.0) and np.all(out[hu >= 40 + 200] == 1.0)
    mid = (hu > -100) & (hu < 180)
    expect = (hu[mid] - (40 - 0.5 - 199.5)) / 399  # DICOM LINEAR window
    assert mid.sum() > 100 and np.abs(out[mid] - expect).max() < 0.01


def test_voi_lut_sequence_and_modality_lut(tmp_path):
    import pydicom
    from pydicom.pixels import apply_voi_lut

    ds = pydicom.dcmread(_dcm("vlut_04.dcm"))  # 8-bit, VOI LUT sequence
    out = decode_file(_dcm("vlut_04.dcm"), BIG).pixels
    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    ref = apply_voi_lut(ds.pixel_array, ds).astype(float) / (2**bits - 1)
    assert np.abs(out - ref).max() < 1e-6
    m = decode_file(_dcm("mlut_18.dcm"), BIG).pixels  # 12-bit with a modality LUT sequence
    assert m.shape == (512, 512) and 0 <= m.min() < m.max() <= 1 and m.std() > 0.05
