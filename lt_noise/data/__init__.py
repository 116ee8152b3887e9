"""Data: label corruption, class-count profiles, the indexed dataset and the datamodules."""
