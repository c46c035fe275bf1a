"""`anyecg embed PATHS...`: ECG embeddings (the `ecg-embedding` output: the backbone's pooled `pooler_output`) of
files or a whole biobank, with the same engine and options as `anyecg profile`."""

from __future__ import annotations

import argparse
import textwrap

from .profile import DISTRIBUTED, EXIT_CODES, add_job_arguments, run


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "embed",
        description=textwrap.fill(
            "Embed ECG files: one vector per record (the model's pooler_output, as the ecg-embedding pipeline "
            "returns; records longer than the model's input are windowed and the windows averaged). Writes sharded "
            "Parquet (column 'embedding'), or CSV (columns e0..eN) / JSON. Unreadable files are reported and "
            "skipped.", 100),
        epilog=EXIT_CODES + "\n" + DISTRIBUTED.format(task="embed") + """
examples:
  anyecg embed /biobank/ecgs --model ./my-model --out embeddings/ --workers 2
  python -c "import pandas as pd, numpy as np; df = pd.read_parquet('embeddings/'); X = np.stack(df.embedding)"
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(p, "embed")
    p.set_defaults(func=lambda args: run(args, "embed"))
