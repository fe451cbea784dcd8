"""Moved to `kdbench.record` (the run record's one home: address, identity, schema, check, store).
These names remain importable from here for the modules not yet switched over (report, plots,
tuning, tuning_report); new code imports `kdbench.record`."""

from kdbench.record import (ADVICE, DEFAULT_PROTOCOL, DEFAULTS, METRICS, SCRATCH, TEACHER, TUNED, VARIANT_TITLES,
                            RunStore, check_record, dataset_label, record_protocol, run_label, safe_name)

__all__ = ["ADVICE", "DEFAULT_PROTOCOL", "DEFAULTS", "METRICS", "SCRATCH", "TEACHER", "TUNED", "VARIANT_TITLES",
           "RunStore", "check_record", "dataset_label", "record_protocol", "run_label", "safe_name"]
