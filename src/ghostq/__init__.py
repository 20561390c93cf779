"""ghostq: remote-sensing detectors from robust training to GHOST compression and measured edge deployment."""

__version__ = "0.1.0"
