"""genre-recourse as code: the champion pair served as one model (see tasks.serving.recourse_model.RecourseModel)."""
from mlflow.models import set_model

from tasks.serving.recourse_model import RecourseModel

set_model(RecourseModel())
