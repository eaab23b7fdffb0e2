"""Thin CloudEvent adapters: check the event type, parse the payload, call one core function."""
