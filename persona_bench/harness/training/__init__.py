"""Learning to steer: the shared trainer (examples, checkpoints, resume), learned steering methods
and the membership audit of a trained module."""
