"""The paper's evaluation protocol: the judge-backed set-up, the method registry, baselines, GenRe as methods,
`genre evaluate` and `genre tune`."""
