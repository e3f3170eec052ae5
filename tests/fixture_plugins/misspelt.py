from ganpipe import hookimpl


@hookimpl
def ganpipe_loses():
    return {}
