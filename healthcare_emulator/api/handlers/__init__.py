"""Request handling: parse and validate a request, call storage/engine/ingest, serialize the answer."""
