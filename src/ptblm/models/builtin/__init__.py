"""PyTorch's own layers at the course's sizes: the bench's yardstick for the from-scratch models' speed.

Kept apart from the from-scratch models one folder up, whose files must not use torch's recurrent
modules (tests/test_models.py checks them); the registry names each architecture's baseline here.
"""
