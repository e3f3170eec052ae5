"""ganpipe: style-diverse image generation with GANs.

Importing the package is cheap on purpose: torch and prefect load only inside the stages that
need them, so ``ganpipe --help`` and config validation stay fast.
"""

__version__ = "0.1.0"

import pluggy as _pluggy

#: Decorator for plugin hook implementations: ``@ganpipe.hookimpl def ganpipe_losses(): ...``
hookimpl = _pluggy.HookimplMarker("ganpipe")
