"""The driver's parts, one job each; `kdbench.runner.Runner` schedules cells through them.

- `validation`: cells refused before anything trains (dataset, pairing, strategy, memory);
- `splits`: the split each cell reads (its fingerprint and catalogue size), loaded once;
- `stored_runs`: which cells are finished with their identity, what must not be overwritten, and
  writing new records;
- `teachers`: the teacher cache: keys, cached entries (healing damaged ones), training the
  missing teachers once each;
- `claims`: claim files, so that processes sharing a folder compute each cell, teacher and tuning
  study once.
"""
