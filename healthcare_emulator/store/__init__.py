"""The DICOM store: SQLite index and content-addressed blobs, and QIDO-RS matching over it. Knows no HTTP."""
