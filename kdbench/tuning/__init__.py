"""Fair tuning (every strategy of a pairing gets the same Optuna budget in training epochs, on
validation only), one job a module:

- `settings`: a suite's `tuning:` block (budgets, seeds, pruner);
- `studies`: the studies, their storage and identity, the trials handed to the workers, the chosen values;
- `trial`: one trial in a worker (tuning seeds, pruning on epochs);
- `resume`: what a trial keeps while it trains, so that a killed trial goes on where it stopped;
- `storage`: checks of an Optuna SQLite file before it is opened;
- `teachers`: a pairing's teacher tuned with the same mechanics;
- `best`: the chosen values read back, and the suite's tuned cells.
"""

from kdbench.tuning.best import BEST_FIELDS, SUMMARY_FIELDS, read_best, read_summary, tuned_cells
from kdbench.tuning.settings import TUNING_KEYS, TuningSettings
from kdbench.tuning.studies import (
    DEFAULTS, HPARAMS, INTERRUPTED, Study, check_storages, open_study, run_studies, spent, study_cells, tune,
    write_best,
)
