"""Output lines -> typed rows -> the joined frame: parse, blocks, rows, join, the read side, classify's columns."""
