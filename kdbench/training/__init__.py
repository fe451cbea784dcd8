"""Training a teacher or a student, and the teacher knowledge kept beside it.

- `loop`: the training loop (base loss + weight * KD loss, validation cadence, early stopping);
- `trajectory`: a teacher's top-K lists during its training (HetComp), cached beside the teacher;
- `teacher_file`: teachers from files (`--teacher file:PATH`, `export-teacher`): format, checks,
  adapter.
"""
