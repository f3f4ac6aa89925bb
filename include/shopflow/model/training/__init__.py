"""Fine-tuning a transformer to predict a product's category, evaluating it, and the classical baseline.

torch and transformers are imported inside the functions that need them: importing shopflow stays light, and the
training itself runs in a spawned subprocess (`shopflow.model.worker`) so an Airflow worker never touches CUDA.
"""
