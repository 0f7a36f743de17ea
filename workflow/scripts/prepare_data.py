"""Snakemake job (rule prepare_data): build one dataset once into results/data/*.npz.

Every training job then memory-maps the same prepared arrays instead of regenerating them.
"""

import sys
from pathlib import Path

from nnopt.train.data import prepare_dataset
from nnopt.config.spec import parse_spec


def main(smk) -> None:
    with open(smk.log[0], "w") as log:
        sys.stderr = log
        out = Path(smk.output[0])
        data = parse_spec({"data": smk.params.data}).data
        path = prepare_dataset(data, out.parent)
        if path != out:  # the cache's naming and the rule's output must agree
            raise RuntimeError(f"prepare_dataset wrote {path}, the rule expects {out}")
        print(f"prepared {out} ({out.stat().st_size / 1e6:.1f} MB)", file=log)


main(snakemake)  # noqa: F821 (injected by Snakemake's script directive)
