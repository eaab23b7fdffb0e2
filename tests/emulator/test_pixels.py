"""healthcare_emulator.dicom.pixels without HTTP: transcoding round trips, rendering arithmetic, frame cutting."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_samples import synthetic_instance
from healthcare_emulator.dicom import pixels

LOSSLESS = (pixels.EXPLICIT_LE, pixels.IMPLICIT_LE, pixels.DEFLATED_LE, pixels.RLE_LOSSLESS, pixels.JPEG_LS_LOSSLESS,
            pixels.J2K_LOSSLESS)


def corpus(name: str) -> bytes:
    with open(get_testdata_file(name), "rb") as fh:
        return fh.read()


def read(data: bytes) -> pydicom.Dataset:  # quietly: some corpus files carry invalid UIDs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data))


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def image_instance(frames: np.ndarray, photometric: str = "MONOCHROME2", **attributes: object) -> bytes:
    """A minimal Secondary Capture instance around `frames` ((n,) rows x columns [x 3]), explicit VR LE."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.SamplesPerPixel = 3 if frames.ndim == 4 else 1
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = frames.dtype.itemsize * 8
    ds.BitsStored = ds.BitsAllocated
    ds.HighBit = ds.BitsAllocated - 1
    ds.PixelRepresentation = 1 if frames.dtype.kind == "i" else 0
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = frames.astype(frames.dtype.newbyteorder("<")).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_bigendian.dcm", "SC_rgb_rle_2frame.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_small_odd.dcm", "rtdose.dcm"])
def test_lossless_transcodes_keep_every_pixel_value_and_the_uids(name):
    data = corpus(name)
    original = read(data)
    for syntax in LOSSLESS:
        try:
            out = pixels.transcode(data, syntax)
        except pixels.PixelError as exc:  # encoder limits, e.g. 32-bit RTDOSE in RLE or 3x3 images in J2K
            assert str(exc)
            continue
        ds = read(out)
        assert ds.file_meta.TransferSyntaxUID == syntax
        assert ds.SOPInstanceUID == original.SOPInstanceUID
        assert ds.PatientName == original.PatientName
        np.testing.assert_array_equal(ds.pixel_array, original.pixel_array, err_msg=f"{name} -> {syntax}")


def test_transcoding_to_the_stored_syntax_returns_the_same_bytes():
    data = corpus("MR_small_RLE.dcm")
    assert pixels.transcode(data, pixels.RLE_LOSSLESS) is data


def test_lossy_transcodes_are_flagged_and_close():
    rgb = corpus("SC_rgb_rle_2frame.dcm")
    jpeg = read(pixels.transcode(rgb, pixels.JPEG_BASELINE))
    assert jpeg.file_meta.TransferSyntaxUID == pixels.JPEG_BASELINE
    assert jpeg.PhotometricInterpretation == "YBR_FULL_422"
    assert (jpeg.LossyImageCompression, jpeg.LossyImageCompressionMethod) == ("01", "ISO_10918_1")
    difference = np.abs(jpeg.pixel_array.astype(int) - read(rgb).pixel_array.astype(int))
    assert difference.mean() < 4

    ct = corpus("CT_small.dcm")
    for syntax, method in ((pixels.J2K, "ISO_15444_1"), (pixels.JPEG_LS_NEAR_LOSSLESS, "ISO_14495_1")):
        ds = read(pixels.transcode(ct, syntax))
        assert ds.LossyImageCompressionMethod == method
        error = np.abs(ds.pixel_array.astype(int) - read(ct).pixel_array.astype(int))
        assert error.max() <= (pixels.JPEG_LS_NEAR_ERROR if syntax == pixels.JPEG_LS_NEAR_LOSSLESS else 200)


def test_jpeg_baseline_refuses_16_bit_pixels_with_a_reason():
    with pytest.raises(pixels.PixelError, match=r"8-bit unsigned samples.*BitsAllocated=16"):
        pixels.transcode(corpus("CT_small.dcm"), pixels.JPEG_BASELINE)


def test_instances_without_pixel_data_transcode_but_do_not_render():
    plan = corpus("rtplan.dcm")
    assert read(pixels.transcode(plan, pixels.J2K_LOSSLESS)).file_meta.TransferSyntaxUID == pixels.J2K_LOSSLESS
    for call in (lambda: pixels.render(plan, "png"), lambda: pixels.frames(plan, pixels.EXPLICIT_LE)[0]):
        with pytest.raises(pixels.PixelError, match=r"no pixel data .*RT Plan Storage"):
            call()


def test_render_applies_rescale_then_the_first_window():
    data = synthetic_instance(seed=3).data  # 12-bit CT, intercept -1024, window 40/400
    stored = read(data).pixel_array.astype(float)
    hu = stored - 1024
    expected = np.clip(((hu - 39.5) / 399 + 0.5) * 255, 0, 255)
    np.testing.assert_array_equal(png(pixels.render(data, "png")[0]), np.rint(expected).astype(np.uint8))


def test_render_without_window_uses_min_max_and_inverts_monochrome1():
    frame = np.array([[[10, 20], [40, 50]]], dtype=np.uint16)
    plain = png(pixels.render(image_instance(frame), "png")[0])
    inverted = png(pixels.render(image_instance(frame, "MONOCHROME1"), "png")[0])
    np.testing.assert_array_equal(plain, [[0, 64], [191, 255]])  # (v - 10) / 40 * 255
    np.testing.assert_array_equal(inverted, 255 - plain)


def test_render_multi_window_values_use_the_first_and_multi_frames_give_one_image_each():
    frames = np.stack([np.full((4, 6), value, dtype=np.uint8) for value in (0, 100, 200)])
    data = image_instance(frames, WindowCenter=["100", "50"], WindowWidth=["101", "10"])
    images = [png(image) for image in pixels.render(data, "png")]
    assert [image.shape for image in images] == [(4, 6)] * 3
    # PS3.3 C.11.2.1.2.1 with c=100, w=101: ((100 - 99.5) / 100 + 0.5) * 255 = 128.8
    assert [int(image[0, 0]) for image in images] == [0, 129, 255]


def test_render_colour_16_bit_scales_to_8_bits_and_jpeg_decodes():
    rgb16 = corpus("SC_rgb_rle_16bit_2frame.dcm")
    images = [Image.open(io.BytesIO(image)) for image in pixels.render(rgb16, "jpeg")]
    assert [(image.format, image.mode, image.size) for image in images] == [("JPEG", "RGB", (100, 100))] * 2
    first = png(pixels.render(rgb16, "png")[0])
    np.testing.assert_array_equal(first, np.rint(read(rgb16).pixel_array[0] / 65535 * 255).astype(np.uint8))


def test_raw_frames_are_little_endian_and_stored_frames_stay_compressed():
    big = corpus("MR_small_bigendian.dcm")
    assert pixels.frames(big, pixels.EXPLICIT_LE)[0] == [read(big).pixel_array.astype("<i2").tobytes()]
    rle = corpus("SC_rgb_rle_2frame.dcm")
    assert [len(frame) for frame in pixels.frames(rle, pixels.EXPLICIT_LE)[0]] == [100 * 100 * 3] * 2
    stored = pixels.frames(rle, "*")[0]
    assert len(stored) == 2 and all(len(frame) < 100 * 100 * 3 for frame in stored)


def test_raw_frames_of_unaligned_one_bit_frames_start_on_a_byte():
    frames = np.random.default_rng(1).integers(0, 2, size=(3, 3, 5), dtype=np.uint8)  # 15 bits a frame
    ds = read(image_instance(frames.astype(np.uint8)))
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelData = np.packbits(frames.ravel(), bitorder="little").tobytes()
    out = io.BytesIO()
    ds.save_as(out)
    raw = pixels.frames(out.getvalue(), pixels.EXPLICIT_LE)[0]
    unpacked = [np.unpackbits(np.frombuffer(f, np.uint8), bitorder="little")[:15].reshape(3, 5) for f in raw]
    np.testing.assert_array_equal(np.stack(unpacked), frames)


def test_pixel_data_no_codec_here_can_decode_is_a_pixel_error_naming_the_syntax():
    from pydicom.encaps import encapsulate

    ds = read(synthetic_instance(seed=4).data)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder installed
    ds.PixelData = encapsulate([b"\xff\x0a" + bytes(30)])
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    for call in (lambda: pixels.render(data, "png"), lambda: pixels.transcode(data, pixels.EXPLICIT_LE)):
        with pytest.raises(pixels.PixelError, match=r"no decoder here .*1\.2\.840\.10008\.1\.2\.4\.100"):
            call()
    assert pixels.frames(data, "*")[0] == [b"\xff\x0a" + bytes(30)]  # as stored needs no codec


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int8, np.uint8])
def test_render_by_value_table_matches_per_pixel_arithmetic(dtype):
    # Integer frames are rendered through a table over their value range; it must equal per-pixel arithmetic,
    # signed values (which wrap around in the table) and a negative slope included.
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    frame = rng.integers(max(info.min, -3000), min(info.max, 3000), (1, 20, 30)).astype(dtype)
    for attributes in ({"RescaleSlope": "-2", "RescaleIntercept": "100"},
                       {"RescaleSlope": "1.5", "RescaleIntercept": "-7", "WindowCenter": "40", "WindowWidth": "90"}):
        data = image_instance(frame, **attributes)
        values = frame[0].astype(float) * float(attributes["RescaleSlope"]) + float(attributes["RescaleIntercept"])
        if "WindowCenter" in attributes:
            center, width = 40.0, 90.0
            expected = np.clip(((values - (center - 0.5)) / (width - 1) + 0.5) * 255, 0, 255)
        else:
            expected = (values - values.min()) * 255 / (values.max() - values.min())
        np.testing.assert_array_equal(png(pixels.render(data, "png")[0]), np.rint(expected).astype(np.uint8))
