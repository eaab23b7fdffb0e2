"""The local stack: helpers that start the emulators this project runs against, and the whole pipeline offline."""
