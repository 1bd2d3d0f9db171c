"""`ptblm bench`: one training step of each model and shape, timed side by side on this machine.

A step is what training does per batch: forward, backward, clip to 0.25, Adam update, on random
tokens (seq 35, emb 200, the corpus's vocabulary: --corpus, PTB's 10,000 by default). cases.py says what
is timed (a model and shape on each path), timing.py how (warm-up, then the median of many steps; K
processes at once for packing), command.py what `ptblm bench` prints and writes (the table, the suite's
projection, bench-<time>.json, which the dry run's cost projection reads).
"""
