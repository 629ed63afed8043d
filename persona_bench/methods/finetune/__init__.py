"""Fine-tuning: a LoRA adapter on the LM, trained on the train answers in a prompting method's style."""
from . import method  # noqa: F401  (registers the method "finetune" and the steering family "none")
