"""`python -m local_stack status`: "degraded" when a topic or subscription the stack needs is missing."""

from __future__ import annotations

import argparse
import json
import os
import uuid

import pytest
import requests

from local_stack.__main__ import status
from local_stack.pubsub_emulator import launcher_path

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(launcher_path() is None, reason="the Pub/Sub emulator is not installed")]


def test_a_missing_topic_or_subscription_makes_the_stack_degraded(pubsub, tmp_path, capsys) -> None:
    base = f"http://{pubsub.host}/v1/projects/status-project"
    topic, subscription = f"topics/t-{uuid.uuid4().hex[:8]}", f"subscriptions/s-{uuid.uuid4().hex[:8]}"
    requests.put(f"{base}/{topic}", json={}, timeout=30).raise_for_status()
    requests.put(f"{base}/{subscription}", json={"topic": f"projects/status-project/{topic}"},
                 timeout=30).raise_for_status()
    state = {"pid": os.getpid(), "endpoints": {"pubsub-emulator": f"http://{pubsub.host}"},
             "subscriptions": {f"projects/status-project/{subscription}": f"projects/status-project/{topic}"}}
    (tmp_path / "state.json").write_text(json.dumps(state))
    args = argparse.Namespace(run_dir=tmp_path)

    assert status(args) == 0
    assert capsys.readouterr().out.startswith("running")

    requests.delete(f"{base}/{topic}", timeout=30).raise_for_status()  # what an emulator restart does to all
    assert status(args) == 1
    out = capsys.readouterr().out
    assert out.startswith("degraded")
    assert f"missing: projects/status-project/{topic}" in out
