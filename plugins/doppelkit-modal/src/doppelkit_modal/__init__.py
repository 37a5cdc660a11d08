"""doppelkit-modal: ``+backend=modal`` trains personas on Modal's GPUs and serves the Slack bot
there, scaling to zero when nobody talks to it.

Importing the package is light (pydantic only); modal is imported by the functions that use it.
Parts: :mod:`.config` (``backend.*``), :mod:`.credentials`, :mod:`.backend` (where each step
runs), :mod:`.image` (the image from the installed code), :mod:`.app` (the functions and
classes, decorated from config), :mod:`.remote` (their bodies), :mod:`.sides` (everything that
talks to Modal), :mod:`.transfer` (up and down the Volume), :mod:`.engine_proxy` (the engine
class as an engine), :mod:`.hosting` (what a hosted run must look like), :mod:`.testing`.
"""

__version__ = "0.1.0"
