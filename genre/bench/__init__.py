"""The bench harness: GenRe's own speed benches and the side-by-side run against its peers (DiCE, CFRL)."""
