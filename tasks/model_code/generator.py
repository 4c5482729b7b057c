"""genre-generator as code: GenRe recourse per factual row (see tasks.pyfunc_models.GeneratorModel)."""
from mlflow.models import set_model

from tasks.pyfunc_models import GeneratorModel

set_model(GeneratorModel())
