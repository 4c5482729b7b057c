"""GenRe: generative algorithmic recourse (Garg, Nagalapatti, Sarawagi, ICLR 2025) as a pure library.

Only torch, numpy, pandas and scikit-learn here: no Prefect, MLflow, Great Expectations or Evidently.
"""

__version__ = "0.1.0"
