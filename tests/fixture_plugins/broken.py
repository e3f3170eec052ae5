from ganpipe import hookimpl


@hookimpl
def ganpipe_losses():
    raise RuntimeError("boom")


@hookimpl
def ganpipe_quality_filters():
    return ["not", "a", "mapping"]
