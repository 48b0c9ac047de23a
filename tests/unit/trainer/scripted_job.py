"""A stand-in for ``services.trainer.job``: reports progress every 20 ms until told to stop.

``<job_dir>/steps`` holds how many steps to report before writing a REJECTED result and exiting
(absent: run until SIGTERM).
"""

import json
import sys
import time
from pathlib import Path

# No import of services.trainer.job: it loads torch, and a scripted job should start in milliseconds.
job_dir = Path(json.loads(Path(sys.argv[1]).read_text())["job_dir"])
steps_file = job_dir / "steps"
steps = int(steps_file.read_text()) if steps_file.exists() else 10**9
for step in range(1, steps + 1):
    line = {"event": "progress", "phase": "train", "progress": step / 100, "step": step, "total_steps": 100}
    print(json.dumps(line), flush=True)
    time.sleep(0.02)
(job_dir / "result.json").write_text(json.dumps({"status": "REJECTED", "offline_score": 0.1}))
