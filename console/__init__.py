"""A web console for the DICOM pipeline: the local stack or Google Cloud, through the public APIs only."""
