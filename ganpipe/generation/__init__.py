"""Generation, in the pieces the generate stage puts together: which model (``models``), what is
asked of it (``request``), how jobs become pixels (``render``), and how a batch is split into
resumable chunks written beside rendering (``chunks``).

Nothing heavy is imported here, so ``from ganpipe.generation.models import ...`` stays cheap
for the command line and the retrain gate.
"""
