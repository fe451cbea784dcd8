"""What kdbench keeps on disk, and how it is written and read back; the ground layer, below data.

- `atomic`: atomic writes (one file or a set): a reader sees the old file or the complete new one;
- `reading`: checked reads of stored JSON: a damaged file is one error naming it;
- `checkpoints`: teacher checkpoints (state dict + JSON), cache keys, checksums, damaged entries
  moved aside;
- `paths`: folder and file arguments checked before anything runs.
"""
