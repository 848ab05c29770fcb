"""The release phase: fails when the commit carries a FAIL_RELEASE file."""

import sys
from pathlib import Path

if Path(__file__).with_name("FAIL_RELEASE").exists():
    print("release phase: FAIL_RELEASE is present, refusing this release")
    sys.exit(1)
print("release phase: ok")
