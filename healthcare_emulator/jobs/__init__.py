"""Work behind the API: operations, import, exports, blob settings, notifications and streaming. Knows no HTTP."""
