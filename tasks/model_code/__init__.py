"""MLflow models-from-code entries: each file builds one pyfunc model with `mlflow.models.set_model`.

`mlflow.pyfunc.log_model(python_model=<path of one of these files>, artifacts=...)` stores the file's code
with the model instead of a CloudPickle of the instance, so a model loads by running readable code
(https://mlflow.org/docs/latest/ml/model/models-from-code/). The adapters themselves live in
`tasks.training.pyfunc_models` and `tasks.serving.recourse_model`.
"""
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLASSIFIER, GENERATOR, RECOURSE = (str(HERE / f"{name}.py") for name in ("classifier", "generator", "recourse"))
