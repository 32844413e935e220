"""Compression of the RNN-T for the chip: recipes, post-training quantization/pruning, and the
integer reference model (IntRNNT). The chip-side twin is asr.chip.ChipRNNT."""
