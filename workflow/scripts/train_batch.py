"""Snakemake job (rule train): train one batch of runs in this process, write its manifest.

The runs come from `params.runs` (no extra file); finished runs are skipped by the runner,
a failed run is recorded (status failed) and the others go on, and the job exits 0 so the
aggregate and the report still run and show the failure. The next invocation retries it.
"""

import os
import socket
import time

STARTED = time.time()

from nnopt.plan import packing
from nnopt.store.runs import read_run
from nnopt.config.spec import parse_spec


def main(smk) -> None:
    gpus = int(getattr(smk.resources, "gpu", 0) or 0)
    if gpus and "CUDA_VISIBLE_DEVICES" not in os.environ:
        packing.claim_gpus(gpus, ".snakemake/nnopt-gpu-locks")
    from nnopt.train.runner import run_batch  # after CUDA_VISIBLE_DEVICES: torch reads it once

    items = [{**item, "spec": parse_spec(item["spec"])} for item in smk.params.runs]

    with open(smk.log[0], "w") as log:
        # The batch's own threads: an exclusive (timing) job holds every core, torch does not.
        threads = getattr(smk.params, "torch_threads", smk.threads)
        records = run_batch(items, threads=threads, log=log, data_cache=smk.params.cache_dir)
        for row in records:  # the job log also says why a run failed (metrics.json has it too)
            if row["status"] == "failed" and row["trained"]:
                print(f"\n{row['out']}:\n{read_run(row['out']).get('traceback')}", file=log)
    packing.write_json_atomic(
        smk.output[0],
        {
            "batch": smk.wildcards.batch,
            "threads": smk.threads,
            "host": socket.gethostname(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "wall_time_s": round(time.time() - STARTED, 3),  # the whole job, start-up included
            "runs": records,
        },
    )


main(snakemake)  # noqa: F821 (injected by Snakemake's script directive)
