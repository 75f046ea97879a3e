import signal

import pytest

# No test here may hang: each gets a hard wall-clock limit through SIGALRM (forked DataLoader
# workers do not inherit the timer).
_LIMIT_S = 30


@pytest.fixture(autouse=True)
def _alarm_guard():
    def expire(signum, frame):
        raise TimeoutError(f"test exceeded its {_LIMIT_S} s guard")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(_LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
