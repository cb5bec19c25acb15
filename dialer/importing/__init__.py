"""The lead importer's parts: reading files, screening numbers in bulk, loading leads, rejects.

`dialer.importer` is the service; these modules are its pieces and import nothing from it.
"""

from __future__ import annotations


class ImportFailed(Exception):
    """The file cannot be imported at all; nothing was stored."""
