"""DICOM to feed the pipeline: synthetic studies (no PHI) generated with pydicom, and pydicom's vendor corpus.

Test data, not product code: the tests, the benchmarks and the local stack's demo (`python -m local_stack
demo`) use it; the deployed functions and the emulator never import it. It is a package of its own rather
than a tests/ module because the demo runs from an installed checkout, where tests/ is not importable.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

_MODALITIES = {"CT": CTImageStorage, "MR": MRImageStorage}


@dataclass(frozen=True)
class SyntheticInstance:
    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str
    data: bytes


def synthetic_instance(
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    *,
    modality: str = "CT",
    rows: int = 64,
    columns: int = 64,
    patient_id: str = "SYNTH-0001",
    patient_name: str = "Synthetic^Patient",
    accession_number: str = "ACC0001",
    study_date: str = "20240102",
    instance_number: int = 1,
    series_number: int = 1,
    seed: int = 0,
) -> SyntheticInstance:
    """One Part-10 instance with 16-bit pixels; names and ids are synthetic, never real patients."""
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    sop_uid = sop_uid or generate_uid()
    sop_class = _MODALITIES.get(modality, CTImageStorage)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = accession_number
    ds.Modality = modality
    ds.Manufacturer = "dicom-pipeline synthetic"
    ds.ReferringPhysicianName = "Referrer^Synthetic"
    ds.StudyDescription = f"Synthetic {modality} study"
    ds.SeriesDescription = f"Synthetic {modality} series {series_number}"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.SliceThickness = "1.25"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [0.0, 0.0, float(instance_number)]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    rng = np.random.default_rng(seed)
    ds.PixelData = rng.integers(0, 4096, size=(rows, columns), dtype=np.uint16).tobytes()

    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return SyntheticInstance(study_uid, series_uid, sop_uid, modality, out.getvalue())


def synthetic_studies(
    studies: int,
    series_per_study: int = 2,
    instances_per_series: int = 5,
    sizes: tuple[int, ...] = (64,),
    seed: int = 1,
) -> Iterator[SyntheticInstance]:
    """Multi-study data: each study has its own synthetic patient; image sizes cycle through `sizes`."""
    rng = random.Random(seed)
    count = 0
    for study_index in range(studies):
        study_uid = generate_uid()
        modality = "CT" if study_index % 2 == 0 else "MR"
        for series_index in range(series_per_study):
            series_uid = generate_uid()
            for instance_index in range(instances_per_series):
                size = sizes[count % len(sizes)]
                count += 1
                yield synthetic_instance(
                    study_uid, series_uid, modality=modality, rows=size, columns=size,
                    patient_id=f"SYNTH-{study_index:04d}", patient_name=f"Synthetic^Patient{study_index:04d}",
                    accession_number=f"ACC{study_index:05d}", study_date=f"2024{1 + study_index % 12:02d}15",
                    instance_number=instance_index + 1, series_number=series_index + 1,
                    seed=rng.randrange(2**31),
                )


def vendor_corpus() -> list[Path]:
    """Every file pydicom ships under pydicom/data/test_files (good and broken ones alike)."""
    from pydicom.data import get_testdata_file

    marker = get_testdata_file("CT_small.dcm")
    if not isinstance(marker, str):
        raise RuntimeError("pydicom's test files are missing (pydicom/data/test_files)")
    root = Path(marker).parent
    return sorted(p for p in root.rglob("*") if p.is_file())
