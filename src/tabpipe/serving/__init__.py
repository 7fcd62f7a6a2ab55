"""The prediction web service: the Flask app, its routes, the model it holds and the answers it gives."""
