"""genre-generator as code: GenRe recourse per factual row (see tasks.training.pyfunc_models.GeneratorModel)."""
from mlflow.models import set_model

from tasks.training.pyfunc_models import GeneratorModel

set_model(GeneratorModel())
