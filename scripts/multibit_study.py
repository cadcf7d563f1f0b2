"""Binary vs 2-bit vs 4-bit networks on the same binary-cell arrays (``cosim.study.multibit``).

    .venv/bin/python scripts/multibit_study.py run --model vgg-small --bits 1 2 4 --limit 100 --threads 1
    .venv/bin/python scripts/multibit_study.py render
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosim.study.multibit import main  # noqa: E402

if __name__ == "__main__":
    main()
