"""A short soak in CI (the long one: `python -m ovsam_ros.tools.soak --duration 600`): camera at 60 Hz and
100 prompts/s of every kind; every prompt answered, node alive, memory bounded after warm-up, latency
(in the node's queue and end to end) bounded by the queue policy."""
from __future__ import annotations

import pytest

from ovsam_ros.tools import soak
from tests.ros.node_harness import make_tiny_weights
from tests.ros.ros_env import apply_to_this_process

pytestmark = pytest.mark.ros


def test_short_soak_holds(tmp_path, capsys):
    apply_to_this_process()
    weights = make_tiny_weights(tmp_path / "w", ["red star", "blue cross", "white circle"])
    status = soak.main(["--model", "ovsam-tiny", "--weights", str(weights), "--duration", "15", "--warmup", "5",
                        "--max-wait", "1.0", "--max-rss-growth", "0.05", "--json", str(tmp_path / "soak.json")])
    printed = capsys.readouterr().out
    assert status == 0, printed
    import json

    report = json.loads((tmp_path / "soak.json").read_text())
    assert report["prompts_lost"] == 0 and report["prompts_sent"] >= 1000
    kinds = report["answers_by_kind"]
    assert kinds.get("expired stamp", 0) > 0 and kinds.get("invalid prompt", 0) > 0
    assert not any(kind.startswith(("other", "model error")) for kind in kinds), kinds
    # Bounds from measured figures. Measured p95 end to end: 71 ms on an idle machine (README), and
    # 137, 178 and 269 ms in three runs with a load average of 5-6 on 2 cores (a training run, other
    # test runs and this project's fuzz module beside it); p95 wait in the node's queue: 83, 84, 13 ms.
    # Margin for noise: about 3.7x the worst loaded figure end to end, 6x in the queue. Both stay under
    # max_prompt_wait_s (1 s here), so they fail when the node falls back on its overload policy for
    # more than 5 % of prompts, or when the executor stops keeping up (with a multi-threaded executor
    # and the model on a thread, p95 was ~27 s).
    assert report["node_counts"]["prompt_wait_ms_p95"] <= 500, report
    assert report["latency_ms_p95"] <= 1_000, report
