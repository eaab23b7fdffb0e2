"""The local stack: helpers that start the emulators this project runs against, and sample data."""
