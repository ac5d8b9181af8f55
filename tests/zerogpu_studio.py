"""A studio on an emulated ZeroGPU Space (see zerogpu_emulation), served in a process of its own:

python tests/zerogpu_studio.py HOME PORT LEDGER QUOTAS_JSON_FILE [AWAY_SECONDS]
"""

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]  # the emulation; the studio

import zerogpu_emulation  # noqa: E402  (first: `spaces` before torch, as app.py does on a Space)

home, port, ledger, quotas = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
zerogpu_emulation.install(ledger, quotas)

from adapter_core.engine import leases  # noqa: E402

if len(sys.argv) > 5:
    leases.AWAY_SECONDS = float(sys.argv[5])

from studio.service import Studio  # noqa: E402
from studio.ui import build_app, launch  # noqa: E402

launch(build_app(Studio(home)), server_name="127.0.0.1", server_port=port)
