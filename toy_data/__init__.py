"""Data sets for the lessons: toy 2-D/3-D generators (toy), MNIST / Fashion-MNIST / digits loaders (mnist),
synthetic face identities and insightface's RecordIO / .bin formats (faces)."""

from . import faces, mnist, toy
from .faces import *  # noqa: F403
from .mnist import *  # noqa: F403
from .toy import *  # noqa: F403

__all__ = [*toy.__all__, *mnist.__all__, *faces.__all__]
