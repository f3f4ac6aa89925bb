"""The category model: training (candidates, selection, the worker), embeddings, inference, the registry,
batch prediction and search intent."""
