# Config-derived constants and helpers shared by all rules. The science lives in the lzflow
# package; rules only call its console script with a JSON job spec holding what the job needs.
import json
import sys

from snakemake.utils import validate

from lzflow.config import ConfigError, resolve_config

try:
    LZ = resolve_config(config)  # schema + units + cross-field checks: one-line errors, before any job
except ConfigError as err:
    sys.stderr.write(f"lzflow: config error: {err}\n")
    sys.exit(2)
validate(config, "../schemas/config.schema.yaml")  # the same schema, through Snakemake (fills defaults)

RESULTS = f"{LZ['results_dir']}/{LZ['tag']}"


def as_spec(data):
    """A job spec as compact, key-sorted JSON (stable text, so Snakemake's params trigger is exact)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def all_targets():
    return [f"{RESULTS}/detector.json"]
