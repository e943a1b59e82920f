"""reusely-gateway: an ASGI gateway that holds Reusely's credentials server-side."""

__version__ = "0.1.0"
