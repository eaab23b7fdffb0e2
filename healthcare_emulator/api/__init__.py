"""HTTP: the server, the route table (REST and DICOMweb), request handlers, multipart and request schemas."""
