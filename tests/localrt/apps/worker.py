"""A worker that prints a numbered line now and then."""

import itertools
import time

for n in itertools.count():
    print(f"tick {n}", flush=True)
    time.sleep(0.2)
