"""genre-classifier as code: h(x) = P(favourable | applicant) (see tasks.training.pyfunc_models.ClassifierModel)."""
from mlflow.models import set_model

from tasks.training.pyfunc_models import ClassifierModel

set_model(ClassifierModel())
