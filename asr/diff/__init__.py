"""Neural diffs: small model updates (sparse and hash diffs), their file format and costs.

Public API: asr.diff.format (SparseDiff, HashDiff, encode_diff/decode_diff, save_diff/load_diff,
apply_diff, apply_diff_file, model_hash), asr.diff.hashing (bucket_and_sign),
asr.diff.train (train_sparse_diff, train_hash_diff, finetune_full), asr.diff.chip (apply_cost),
asr.diff.shifts (new-word data shifts).
"""
