"""`moments deliver`: the actions topic (or a JSONL file) to Braze and Iterable, as its own job and
consumer group, so a vendor outage slows delivery, never detection. `cli.py` holds the parser and
`run`, `config.py` the options; the loop itself is `udfs/delivery/drain.py`.
"""

from jobs.deliver.cli import configure_parser, run
from jobs.deliver.config import DEFAULT_GROUP_ID, DeliverConfig

__all__ = ["DEFAULT_GROUP_ID", "DeliverConfig", "configure_parser", "run"]
