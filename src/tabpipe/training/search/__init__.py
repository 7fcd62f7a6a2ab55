"""The model search: configurations (space), folds, successive halving within the budget, ensemble selection."""
