"""gibench: a reproducible benchmark of gradient inversion attacks and defenses."""

__version__ = "0.1.0"
