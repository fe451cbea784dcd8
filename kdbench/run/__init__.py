"""Running cells: the driver, the unit of work, what a worker runs, and the record it leaves.

- `runner`: the driver (`Runner`): the teacher stage, then the student stage, through an executor;
- `cells`: `Cell`, the unit of work (rebuilt from a record: `cell_from_record`);
- `record`: the run record: its address, identity (config, data fingerprint, teacher's), schema,
  check, reading and writing (`RunStore`);
- `work`: what a worker runs: teacher cell -> weights, student cell -> record;
- `suites`: suite YAML (`kdbench/suites/*.yaml`) -> cells;
- `sweep`: NDCG@10 against embedding size; `reproduce`: one stored run again, its metrics diffed;
- `inference_cost`: inference cost per model shape (`cost`), measured once per shape, on the
  synthetic catalogue, beside its roofline;
- `memory`: the memory a cell needs at least, refused before anything trains;

and the driver's parts, one job each:

- `validation`: cells refused before anything trains (dataset, pairing, strategy, memory);
- `splits`: the split each cell reads (its fingerprint and catalogue size), loaded once;
- `stored_runs`: which cells are finished with their identity, what must not be overwritten, and
  writing new records;
- `teachers`: the teacher cache: keys, cached entries (healing damaged ones), training the
  missing teachers once each;
- `claims`: claim files, so that processes sharing a folder compute each cell, teacher and tuning
  study once;
- `subsample`: `sweep-data`'s share of each user's training interactions;
- `locations`: no absolute folders in records.
"""
