"""Subprocess for the hostile tests: the CLI with the deterministic fake backend of tests/store.

Usage: python -m tests.hostile._worker FSIZE_LIMIT|0 CLI-ARGS...
SB_REAL_BACKEND=1 keeps the real Brian2 backend; SB_BATCH_SLEEP=s makes each of its batches s seconds longer.  A limit > 0 sets RLIMIT_FSIZE and ignores SIGXFSZ, so writes past it fail with EFBIG
(what a full disk looks like to the writer).
"""

import os
import resource
import signal
import sys

import spikebridge.run.store as stream
from spikebridge.cli import main
from tests.store._fake import fake_iter

if os.environ.get("SB_REAL_BACKEND") != "1":
    stream._backend_iter = fake_iter
if float(os.environ.get("SB_BATCH_SLEEP", "0")) > 0:  # slow real batches down, so a test can kill mid-run
    import time

    import spikebridge.run.batches as batches
    import spikebridge.run.simulate as runner

    run_batch = runner.run_batch

    def slow_batch(*args, **kwargs):
        time.sleep(float(os.environ["SB_BATCH_SLEEP"]))
        return run_batch(*args, **kwargs)

    # one process calls it from run.simulate, forked workers from run.batches
    runner.run_batch = slow_batch
    batches.run_batch = slow_batch
limit = int(sys.argv[1])
if limit > 0:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.exit(main(sys.argv[2:]))
