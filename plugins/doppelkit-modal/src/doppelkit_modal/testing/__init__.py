"""Test tooling for the modal backend: everything runs offline, without a Modal account.

* :func:`local_modal` — a stand-in for Modal: a temporary directory is the Volume (and
  ``backend.mount_path``), function bodies run with ``.local()`` (``Cls().method.local()`` runs
  ``@modal.enter`` too) on the very functions :func:`doppelkit_modal.app.build_app` decorated,
  uploads and downloads copy files. Only the transport is replaced: the backend's flow, the
  app, the image recipe and the bodies are the real ones.
* :mod:`doppelkit_modal.testing.introspect` — a function's GPU, timeout, retries, volumes,
  secrets, autoscaling and image layers, read offline from the decorated objects.
"""

from doppelkit_modal.testing.harness import LocalModal, local_modal

__all__ = ["LocalModal", "local_modal"]
