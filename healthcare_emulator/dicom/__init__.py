"""DICOM itself: Part-10 parsing into the DICOM JSON model, pixel work (transcoding, frames, rendering) and bulk data
values, shared by exports and DICOMweb."""
