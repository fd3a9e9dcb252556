"""The worker's steps, one job each, behind one interface (`base.Step`).

`consumer/pipeline.py` assembles them into the chain; `base.Chain` runs it and is the one
place where timing, metrics and the sorting of failures (consumer/retry.py) happen.
"""
