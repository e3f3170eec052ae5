import numpy as np

from ganpipe import hookimpl


class BadShape:
    higher_is_better = True

    def score(self, context):
        return np.zeros(3), np.ones(3, dtype=bool)


@hookimpl
def ganpipe_quality_filters():
    return {"bad_shape": BadShape}
