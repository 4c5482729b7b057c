"""The GenRe library core: data sets, encoding, h, pair synthesis, the generator, its sampler and the recipes."""
