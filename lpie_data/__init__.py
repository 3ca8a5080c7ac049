"""lpie_data: verified, sharded pair datasets for image restoration, and their synthesis.

Public reading API: :func:`iter_pairs`, :func:`pair_dataset`, :func:`read_manifest`,
:func:`value_space_of`, :class:`Pair`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lpie")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

from lpie_data.dataset import iter_pairs, pair_dataset  # noqa: E402
from lpie_data.records import Pair  # noqa: E402
from lpie_data.shards import read_manifest  # noqa: E402
from lpie_data.valuespace import value_space_of  # noqa: E402

__all__ = ["Pair", "__version__", "iter_pairs", "pair_dataset", "read_manifest", "value_space_of"]
