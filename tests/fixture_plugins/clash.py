from ganpipe import hookimpl


@hookimpl
def ganpipe_losses():
    return {"hinge": object}
