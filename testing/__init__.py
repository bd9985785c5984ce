"""Test doubles shared by tests/ and bench/: the loopback EIA stub, cassette replay, bulk-file data.

Not shipped in the wheel (pyproject's ``packages`` lists gridpulse_cli only); importable from the
repository root, where pytest (rootdir on ``sys.path``) and ``python -m bench.run`` both run.
"""
