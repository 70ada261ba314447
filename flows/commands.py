"""Registers every sub-command on the CLI app; one import per command module keeps them independent."""

# the import order is the order of the commands in `zorgpad --help`
# isort: off
from flows import synth_command  # noqa: F401
from flows import vektis_command  # noqa: F401
from flows import demo_command  # noqa: F401
from flows import ingest_command  # noqa: F401
from flows import episodes_command  # noqa: F401
from flows import panels_command  # noqa: F401
from flows import did_command  # noqa: F401
from flows import maturity_command  # noqa: F401
from flows import panel_build_command  # noqa: F401
from flows import regional_command  # noqa: F401
from flows import population_command  # noqa: F401
from flows import catalog_command  # noqa: F401
from flows import run_command  # noqa: F401
