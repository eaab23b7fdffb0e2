"""DICOM itself: Part-10 parsing into the DICOM JSON model, and pixel work (transcoding, frames, rendering)."""
