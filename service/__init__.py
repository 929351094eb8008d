"""activation-service: neural-network activation functions and their derivatives over HTTP."""

__version__ = "0.1.0"
