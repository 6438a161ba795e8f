"""The client API's old module name: the hub of ``/client`` sessions lives in ``client_hub``."""

from .client_hub import ClientHub

__all__ = ["ClientHub"]
